"""Population stability index (PSI) of recent model inputs against the training data.

PSI = sum over bins of (actual - expected) * ln(actual / expected), where expected
and actual are the shares of the reference and the recent inputs in each bin.
Numeric features are cut at the reference's deciles, rounded to the precision the
reference is recorded in (outer edges -inf/+inf, so every value falls in a bin);
categorical features use one bin per code. A share of zero is raised to ``EPSILON``
so an empty bin gives a large but finite PSI.

Reading it: below ``PSI_WATCH`` (0.1) the inputs look like the training data;
0.1-0.2 is worth watching; above ``PSI_DRIFT`` (0.2) the inputs have drifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from penguins.features import CATEGORICAL_FEATURES, CATEGORY_CODES, FEATURES, NUMERIC_FEATURES

PSI_WATCH = 0.1
PSI_DRIFT = 0.2
DEFAULT_BINS = 10
EPSILON = 1e-4
# Measurements are recorded to a few decimals; a column needing more is not rounded.
MAX_DECIMALS = 6
PRECISION_TOLERANCE = 1e-9
# Float noise of a quantile, in units of the data's last decimal, is far below this.
NOISE_DECIMALS = 6


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Return the PSI of two histograms over the same bins (counts or shares)."""
    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    if expected.shape != actual.shape or expected.sum() <= 0 or actual.sum() <= 0:
        raise ValueError("psi needs two non-empty histograms over the same bins")
    e = np.clip(expected / expected.sum(), epsilon, None)
    a = np.clip(actual / actual.sum(), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def precision_of(values: np.ndarray) -> int | None:
    """Return the fewest decimals that write every value exactly, or None beyond MAX_DECIMALS."""
    values = np.asarray(values, dtype="float64")
    for decimals in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(values, decimals), values, rtol=0, atol=PRECISION_TOLERANCE):
            return decimals
    return None


def quantile_edges(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Return the inner bin edges at the reference's quantiles, at its precision (ties merged)."""
    values = np.asarray(reference, dtype="float64")
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    decimals = precision_of(values)
    if decimals is not None:
        # np.quantile computes a decile of 45.8 as 45.800000000000004, so an input of
        # exactly 45.8 fell one bin lower than the reference's 45.8s. Each edge becomes
        # the smallest value at the data's precision (0.1 mm, 1 g) not below the decile,
        # its float noise dropped first: values at that precision split exactly as at
        # the decile itself, and an input on an edge falls in the bin above it.
        scale = 10.0**decimals
        inner = np.ceil(np.round(inner * scale, NOISE_DECIMALS)) / scale
    return np.unique(inner)


@dataclass(frozen=True)
class FeatureBins:
    """How one feature is binned, and the reference's share in each bin."""

    feature: str
    edges: np.ndarray | None  # inner edges of a numeric feature; None for a categorical one
    codes: tuple[int, ...]  # the codes of a categorical feature; empty for a numeric one
    expected: np.ndarray

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Return how many of the values fall in each bin."""
        values = np.asarray(values, dtype="float64")
        if self.edges is not None:
            # Bin i holds edges[i-1] <= x < edges[i]; bin 0 and the last are open-ended.
            index = np.searchsorted(self.edges, values, side="right")
            return np.bincount(index, minlength=len(self.edges) + 1)
        # One bin per known code and a last one for anything else, which the
        # reference never holds, so unknown codes show up as drift.
        index = np.full(values.shape, len(self.codes), dtype="int64")
        for i, code in enumerate(self.codes):
            index[values == code] = i
        return np.bincount(index, minlength=len(self.codes) + 1)


class DriftBaseline:
    """Bins and expected shares of every feature, built once from the training data."""

    def __init__(self, reference: pd.DataFrame, bins: int = DEFAULT_BINS) -> None:
        """Bin every feature of FEATURES from a reference frame holding those columns."""
        missing = [f for f in FEATURES if f not in reference.columns]
        if missing:
            raise ValueError(f"reference data is missing columns: {', '.join(missing)}")
        if reference.empty:
            raise ValueError("reference data has no rows")
        self.size = len(reference)
        self.features: dict[str, FeatureBins] = {}
        for name in NUMERIC_FEATURES:
            column = reference[name].to_numpy(dtype="float64")
            edges = quantile_edges(column, bins)
            self.features[name] = self._bins(name, edges, (), column)
        for name in CATEGORICAL_FEATURES:
            column = reference[name].to_numpy(dtype="float64")
            codes = tuple(sorted(CATEGORY_CODES[name].values()))
            self.features[name] = self._bins(name, None, codes, column)

    @staticmethod
    def _bins(
        name: str, edges: np.ndarray | None, codes: tuple[int, ...], column: np.ndarray
    ) -> FeatureBins:
        """Return the bins of one feature with the reference's counts as expected."""
        empty = FeatureBins(name, edges, codes, np.zeros(0))
        return FeatureBins(name, edges, codes, empty.counts(column))

    def psi(self, current: np.ndarray | pd.DataFrame) -> dict[str, float]:
        """Return the PSI of each feature for rows of the six FEATURES, in that order."""
        if isinstance(current, pd.DataFrame):
            current = current[list(FEATURES)].to_numpy(dtype="float64")
        current = np.asarray(current, dtype="float64")
        if current.ndim != 2 or current.shape[1] != len(FEATURES) or len(current) == 0:
            raise ValueError(f"expected a non-empty (n, {len(FEATURES)}) array of inputs")
        return {
            name: psi(bins.expected, bins.counts(current[:, FEATURES.index(name)]))
            for name, bins in self.features.items()
        }
