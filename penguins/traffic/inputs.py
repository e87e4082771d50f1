"""Realistic model inputs and the API requests that carry them (valid or not).

Rows of the data set with measurement noise, optionally drifted. The traffic runner
sends them; tests and benchmarks fill the prediction log with inputs that look like
(or unlike) the training data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from penguins.features import (
    BOUNDS,
    FEATURES,
    ISLAND_CODES,
    NUMERIC_FEATURES,
    SEX_CODES,
    TARGET,
)

# Noise standard deviation as a share of each feature's spread in the data: about
# 0.3 mm of bill length or 40 g of body mass, the size of a measurement error.
NOISE_SCALE = 0.05
# What --drift adds: heavier birds with longer flippers, far outside the training
# distribution (PSI well above 0.2) but still inside BOUNDS for every row.
DRIFT_SHIFT: dict[str, float] = {"body_mass_g": 1000.0, "flipper_length_mm": 20.0}
# Precision the data set is recorded in (body mass in grams, lengths to 0.1 mm).
_DECIMALS = {"bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 1, "body_mass_g": 0}


def sample_inputs(
    data: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    noise: float = NOISE_SCALE,
    drift: bool = False,
) -> pd.DataFrame:
    """Draw ``n`` rows with replacement, add noise (and the drift shift), keep them in BOUNDS.

    Returns the six FEATURES columns plus ``species``, the true label of the drawn row.
    """
    rows = data.iloc[rng.integers(0, len(data), size=n)].reset_index(drop=True)
    out = rows[list(FEATURES)].copy()
    for name in NUMERIC_FEATURES:
        values = out[name].to_numpy(dtype="float64")
        values = values + rng.normal(0.0, noise * float(data[name].std()), size=n)
        values = values + (DRIFT_SHIFT.get(name, 0.0) if drift else 0.0)
        bounds = BOUNDS[name]
        out[name] = np.clip(values, bounds.low, bounds.high).round(_DECIMALS[name])
    out[TARGET] = rows[TARGET].to_numpy()
    return out


# The status the API answers to each kind of invalid request the traffic sends.
INVALID_KINDS: dict[str, int] = {
    "missing_field": 422,
    "out_of_range": 422,
    "wrong_type": 422,
    "bad_batch_sample": 422,
    "bad_json": 400,
    "not_json": 415,
}
# Names as clients write them: islands capitalised, sex in lower case (the API reads
# names in any case, so both spellings are exercised).
_ISLAND_NAMES = {code: name for name, code in ISLAND_CODES.items()}
_SEX_NAMES = {code: name.lower() for name, code in SEX_CODES.items()}


@dataclass(frozen=True)
class ApiRequest:
    """One POST to the API, with what we know of its samples' true species."""

    kind: str  # "single", "batch", or one of INVALID_KINDS
    path: str
    body: bytes
    content_type: str = "application/json"
    truths: tuple[str, ...] = ()  # one per sample of a valid request, in order
    feedback: tuple[bool, ...] = ()  # one per sample: send its true species back
    expected_status: int = 200


def to_sample(row: Mapping, use_names: bool = False) -> dict:
    """Return the JSON sample of a row: codes, or island and sex names when ``use_names``."""
    sample: dict = {name: float(row[name]) for name in NUMERIC_FEATURES}
    if use_names:
        sample["island"] = _ISLAND_NAMES[int(row["island_encoded"])]
        sample["sex"] = _SEX_NAMES[int(row["sex_encoded"])]
    else:
        sample["island_encoded"] = int(row["island_encoded"])
        sample["sex_encoded"] = int(row["sex_encoded"])
    return sample


def valid_request(rows: pd.DataFrame, use_names: Sequence[bool]) -> ApiRequest:
    """Return a /predict request for one row, or a /predict/batch request for several."""
    samples = [
        to_sample(row, names) for (_, row), names in zip(rows.iterrows(), use_names, strict=True)
    ]
    truths = tuple(str(s) for s in rows[TARGET])
    if len(samples) == 1:
        return ApiRequest("single", "/predict", json.dumps(samples[0]).encode(), truths=truths)
    body = json.dumps({"samples": samples}).encode()
    return ApiRequest("batch", "/predict/batch", body, truths=truths)


def invalid_request(kind: str, row: Mapping, rng: np.random.Generator) -> ApiRequest:
    """Return a request of an INVALID_KINDS kind, built around one valid row."""
    sample = to_sample(row)
    field = str(rng.choice(NUMERIC_FEATURES))
    path, content_type = "/predict", "application/json"
    if kind == "missing_field":
        del sample[str(rng.choice(list(sample)))]
    elif kind == "out_of_range":
        sample[field] = BOUNDS[field].high * 10  # a unit mistake: grams sent as milligrams
    elif kind == "wrong_type":
        sample[field] = "unknown"
    elif kind == "bad_batch_sample":
        bad = dict(sample, **{field: -1.0})
        body = json.dumps({"samples": [sample, bad]}).encode()
        return ApiRequest(kind, "/predict/batch", body, expected_status=INVALID_KINDS[kind])
    elif kind == "bad_json":
        body = json.dumps(sample).encode()[:-7]  # cut off mid-value
        return ApiRequest(kind, path, body, expected_status=INVALID_KINDS[kind])
    elif kind == "not_json":
        content_type = "text/plain"
    else:
        raise ValueError(f"unknown invalid request kind {kind!r}")
    body = json.dumps(sample).encode()
    return ApiRequest(kind, path, body, content_type, expected_status=INVALID_KINDS[kind])
