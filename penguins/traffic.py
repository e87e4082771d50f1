"""Realistic model inputs: rows of the data set with measurement noise, optionally drifted.

Used by ``inference.py`` to send traffic, and by tests and benchmarks to fill the
prediction log with inputs that look like (or unlike) the training data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from penguins.features import BOUNDS, FEATURES, NUMERIC_FEATURES, TARGET

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
