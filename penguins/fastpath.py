"""A lean predict_proba for the fitted pipelines: the same maths without per-call pandas.

scikit-learn's ColumnTransformer wants a DataFrame and spends milliseconds per call
building and checking one; a one-row request needs microseconds. This module reads
the fitted preprocessing steps (StandardScaler, passthrough, OneHotEncoder) and
applies them with numpy, then calls the fitted final estimator on the array it
was trained on. The MLflow model stays the source of truth: the fast predictor is
built from it, checked against it on load (``verify``), and anything it does not
know how to mirror is refused, so the caller falls back to the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from penguins.features import FEATURES

# Largest difference between fast and pipeline probabilities that counts as equal.
TOLERANCE = 1e-6


class Unsupported(ValueError):
    """The pipeline holds a step the fast path does not mirror."""


def _is_identity(transformer) -> bool:
    """Return whether a fitted transformer is the identity that stands for passthrough."""
    return (
        isinstance(transformer, FunctionTransformer)
        and transformer.func is None
        and transformer.inverse_func is None
    )


class _Step:
    """One ColumnTransformer branch as numpy: columns in, transformed columns out."""

    def __init__(self, columns: list[int], transformer) -> None:
        self.columns = np.asarray(columns)
        self.mean = self.scale = self.categories = None
        if transformer == "passthrough" or _is_identity(transformer):
            return
        if isinstance(transformer, StandardScaler):
            self.mean = transformer.mean_ if transformer.with_mean else None
            self.scale = transformer.scale_ if transformer.with_std else None
            return
        if isinstance(transformer, OneHotEncoder):
            if transformer.drop_idx_ is not None or transformer.handle_unknown != "ignore":
                raise Unsupported("only OneHotEncoder(handle_unknown='ignore') without drop")
            if getattr(transformer, "_infrequent_enabled", False):
                raise Unsupported("OneHotEncoder with infrequent categories")
            self.categories = [np.asarray(c, dtype=float) for c in transformer.categories_]
            return
        raise Unsupported(f"transformer {type(transformer).__name__}")

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Transform the selected columns of a float array."""
        part = x[:, self.columns]
        if self.categories is not None:
            # Unknown codes match no category and give an all-zero block, as sklearn does.
            return np.hstack(
                [(part[:, [i]] == cats).astype(float) for i, cats in enumerate(self.categories)]
            )
        if self.mean is not None:
            part = part - self.mean
        if self.scale is not None:
            part = part / self.scale
        return part


class FastPredictor:
    """predict_proba for rows given as floats in the contract's feature order."""

    def __init__(self, pipeline: Pipeline) -> None:
        """Mirror a fitted Pipeline(ColumnTransformer, estimator); raise Unsupported if unable."""
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise Unsupported("expected Pipeline(preprocess, model)")
        preprocess, self.estimator = pipeline.steps[0][1], pipeline.steps[1][1]
        if not isinstance(preprocess, ColumnTransformer):
            raise Unsupported("first step is not a ColumnTransformer")
        if list(preprocess.feature_names_in_) != list(FEATURES):
            raise Unsupported("pipeline was not fitted on the contract's features")
        self.steps = []
        for name, transformer, columns in preprocess.transformers_:
            if name == "remainder":
                if transformer != "drop" and len(columns):
                    raise Unsupported("remainder columns are not dropped")
                continue
            if transformer == "drop":
                continue
            index = [FEATURES.index(c) if isinstance(c, str) else int(c) for c in columns]
            self.steps.append(_Step(index, transformer))
        self.classes_ = pipeline.classes_

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the preprocessing to an (n, 6) float array."""
        return np.hstack([step.apply(x) for step in self.steps])

    def predict_proba(self, rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Return class probabilities for an (n, 6) array in feature order."""
        x = np.asarray(rows, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(FEATURES):
            raise ValueError(f"expected shape (n, {len(FEATURES)}), got {x.shape}")
        # Rows are validated before they get here; skip sklearn's per-call re-checks.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            return self.estimator.predict_proba(self.transform(x))


def verify(fast: FastPredictor, pipeline: Pipeline, rows: pd.DataFrame) -> float:
    """Return the largest probability difference between fast and pipeline on ``rows``.

    Raises Unsupported when they disagree by more than TOLERANCE or in class order.
    """
    if list(fast.classes_) != list(pipeline.classes_):
        raise Unsupported("class order differs")
    frame = rows[list(FEATURES)]
    expected = pipeline.predict_proba(frame)
    got = fast.predict_proba(frame.to_numpy(dtype=float))
    worst = float(np.max(np.abs(expected - got)))
    if worst > TOLERANCE:
        raise Unsupported(f"fast path differs from the pipeline by {worst:.3g}")
    return worst
