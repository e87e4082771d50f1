"""Prediction ids: canonical UUID strings, made in bulk for a batch."""

from __future__ import annotations

import os

import numpy as np

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where each of the 32 hex digits goes in the 36 characters of a canonical UUID.
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def new_ids(n: int) -> list[str]:
    """Return ``n`` random UUID4s as canonical strings, as ``str(uuid4())`` but in bulk."""
    raw = np.frombuffer(bytearray(os.urandom(16 * n)), dtype=np.uint8).reshape(n, 16)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 0x0F
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_DIGITS] = _HEX[nibbles]
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, 36 * n, 36)]
