"""Request bodies into model rows: JSON parsing, the fast path for plainly valid samples,
and validation through the request models, whose errors name the fields at fault.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import orjson
from flask import request
from pydantic import BaseModel, ValidationError

from penguins.serving.errors import ApiError
from penguins.serving.schemas import (
    BatchRequest,
    FeedbackRequest,
    Sample,
    fast_rows,
    validation_details,
)

# Python refuses to convert longer digit strings (a guard against slow conversions).
MAX_INT_DIGITS = 4300

M = TypeVar("M", bound=BaseModel)
Rows = list[tuple[float | int, ...]]


# A chunked body is read in pieces of this size, counting, until it ends or passes the limit.
READ_BYTES = 256 * 1024


def raw_body() -> bytes:
    """Return the body of a JSON request, or raise the 415 or 413 it deserves."""
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    if request.content_length is None:  # chunked: no length to refuse before reading
        return read_limited(request.environ["wsgi.input"], request.max_content_length)
    return request.get_data(cache=False)  # 413 up front past MAX_CONTENT_LENGTH


def read_limited(stream: Any, limit: int | None) -> bytes:
    """Read a body of unknown length to its end; 413 as soon as it passes ``limit`` bytes.

    Werkzeug cuts such a body at the limit and says nothing, which would answer the
    first ``limit`` bytes as if they were all (a 400 for cut JSON, or a 200 for valid
    JSON followed by more). The rest of a refused body is left unread.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        want = READ_BYTES if limit is None else min(READ_BYTES, limit + 1 - size)
        chunk = stream.read(want)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ApiError(413, f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)


def loads(raw: bytes) -> Any:
    """Parse a JSON body with the standard library, or raise 400: the reference parser."""
    try:
        # NaN and Infinity literals parse to floats and are then refused as non-finite
        # (422 naming the field); numbers too large for a float parse to inf, likewise.
        return json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ApiError(400, f"body is not valid JSON: {reason}") from None


def loads_fast(raw: bytes) -> Any:
    """Parse a JSON body with orjson (several times faster); None where it refuses it.

    orjson is stricter than the standard library (no NaN, no BOM, no lone surrogates,
    UTF-8 only) and turns integers beyond 64 bits into floats; so its result serves
    only samples that pass :func:`fast_rows`, and everything else is parsed again by
    :func:`loads`, whose answers (400, or values validated into a 422) are the API's.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _parse_int(text: str) -> int | float:
    """Parse a JSON integer; one too long for Python to convert counts as infinite (422)."""
    return int(text) if len(text) <= MAX_INT_DIGITS else math.inf


def validate(model: type[M], data: Any) -> M:
    """Validate data against a request model, raising 422 with the fields at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        samples = data if model in (Sample, BatchRequest) else None  # whose pairs to check
        raise ApiError(422, "invalid request", validation_details(exc, samples)) from None


def sample_rows(raw: bytes) -> Rows:
    """Return the one model row of a /predict body."""
    rows = fast_rows([loads_fast(raw)])
    if rows is None:  # not plainly valid: the models decide, and name the fields at fault
        rows = [validate(Sample, loads(raw)).row()]
    return rows


def batch_rows(raw: bytes, limit: int) -> Rows:
    """Return the model rows of a /predict/batch body, in order; 413 past ``limit`` samples."""
    data = loads_fast(raw)
    parsed_fast = data is not None
    if not parsed_fast:
        data = loads(raw)
    samples = data.get("samples") if isinstance(data, dict) else None
    if isinstance(samples, list) and len(samples) > limit:
        raise ApiError.at_field(
            413,
            f"too many samples: {len(samples)} > {limit} (MAX_BATCH_SIZE)",
            "samples",
            f"at most {limit} samples per request",
        )
    rows = fast_rows(samples) if type(data) is dict and len(data) == 1 else None
    if rows is None:  # not plainly valid: the models decide, and name the fields at fault
        batch = validate(BatchRequest, loads(raw) if parsed_fast else data)
        rows = [s.row() for s in batch.samples]
    return rows


def feedback_request(raw: bytes) -> FeedbackRequest:
    """Return the validated body of a /feedback request."""
    return validate(FeedbackRequest, loads(raw))
