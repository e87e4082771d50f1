"""Prediction ids: time-ordered UUIDv7s (RFC 9562) as canonical strings, made in bulk.

Time-ordered ids make the log's index grow at its end instead of touching pages all
over it, so an insert costs the same at any log size. The layout: 48 bits of Unix
milliseconds, the version (7), a 30-bit counter across ``rand_a`` and the top of
``rand_b`` (RFC 9562, 6.2 method 1), the variant, and 44 random bits. Within one
process the ids are strictly increasing; across processes they are ordered by their
millisecond. Python 3.11 has no ``uuid.uuid7``.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

COUNTER_BITS = 30
# A new millisecond starts its counter at a random point in the lower half, so a batch
# rarely runs out of counter values and ids do not reveal how many came before.
_START_RANGE = 1 << (COUNTER_BITS - 1)
_RANDOM_BITS = 44

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where each of the 32 hex digits goes in the 36 characters of a canonical UUID.
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


class IdClock:
    """The millisecond and counter of the last id made in this process."""

    def __init__(self) -> None:
        """Start with no id made."""
        self._lock = threading.Lock()
        self._ms = -1
        self._next = 0

    def reserve(self, n: int, now_ms: int) -> tuple[int, int]:
        """Return the millisecond and the first counter of ``n`` consecutive ids."""
        with self._lock:
            if now_ms > self._ms:
                self._ms, self._next = now_ms, _random_start()
            if self._next + n > 1 << COUNTER_BITS:  # counter spent: borrow the next ms
                self._ms, self._next = self._ms + 1, _random_start()
            start = self._next
            self._next += n
            return self._ms, start


def _random_start() -> int:
    """Return a random first counter value for a new millisecond."""
    return int.from_bytes(os.urandom(4), "big") % _START_RANGE


_CLOCK = IdClock()


def new_ids(n: int, clock: IdClock = _CLOCK, now_ms: int | None = None) -> list[str]:
    """Return ``n`` UUIDv7s as canonical strings, each greater than every earlier one."""
    ms, start = clock.reserve(n, time.time_ns() // 1_000_000 if now_ms is None else now_ms)
    if n == 1:  # a one-row request: plain integers cost less than numpy's set-up
        return [_one(ms, start)]
    counter = np.arange(start, start + n, dtype=np.uint64)
    noise = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(64 - _RANDOM_BITS)
    high = (np.uint64(ms) << np.uint64(16)) | np.uint64(0x7000) | (counter >> np.uint64(18))
    low = (
        np.uint64(0b10 << 62)
        | ((counter & np.uint64((1 << 18) - 1)) << np.uint64(_RANDOM_BITS))
        | noise
    )
    raw = np.empty((n, 2), dtype=">u8")
    raw[:, 0], raw[:, 1] = high, low
    return _canonical(raw.view(np.uint8).reshape(n, 16))


def _one(ms: int, counter: int) -> str:
    """Return one UUIDv7 of the layout above as a canonical string, without numpy."""
    noise = int.from_bytes(os.urandom(8), "big") >> (64 - _RANDOM_BITS)
    high = (ms << 16) | 0x7000 | (counter >> 18)
    low = (0b10 << 62) | ((counter & ((1 << 18) - 1)) << _RANDOM_BITS) | noise
    text = f"{high:016x}{low:016x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _canonical(raw: np.ndarray) -> list[str]:
    """Return 16-byte rows as canonical UUID strings (lower-case hex with dashes)."""
    n = len(raw)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 0x0F
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_DIGITS] = _HEX[nibbles]
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, 36 * n, 36)]
