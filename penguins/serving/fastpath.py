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
from scipy.special import expit, softmax
from sklearn import config_context
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.multiclass import _ovr_decision_function

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


class _Softmax:
    """LogisticRegression's multinomial probabilities: softmax of the linear scores."""

    def __init__(self, model: LogisticRegression) -> None:
        if len(model.classes_) < 3:
            raise Unsupported("binary logistic regression")
        self.coef = model.coef_.T.copy()
        self.intercept = model.intercept_.copy()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Return softmax(x @ coef + intercept) row by row."""
        return softmax(x @ self.coef + self.intercept, axis=1)


class _CalibratedRbfSvm:
    """CalibratedClassifierCV(SVC(kernel='rbf'), method='sigmoid', ensemble=False) in numpy.

    One-vs-one RBF decision values (libsvm's sum over support vectors), turned into
    one-vs-rest scores the way SVC does, then each class's sigmoid calibrator, then
    normalised so each row sums to one.
    """

    def __init__(self, model: CalibratedClassifierCV) -> None:
        if len(model.calibrated_classifiers_) != 1:
            raise Unsupported("calibrated ensemble of several classifiers")
        calibrated = model.calibrated_classifiers_[0]
        svc = calibrated.estimator
        if not isinstance(svc, SVC) or svc.kernel != "rbf" or calibrated.method != "sigmoid":
            raise Unsupported("only sigmoid-calibrated RBF SVC")
        if svc.decision_function_shape != "ovr" or len(svc.classes_) < 3:
            raise Unsupported("only multiclass one-vs-rest SVC")
        if list(svc.classes_) != list(model.classes_):
            raise Unsupported("calibrator classes differ from the SVC's")
        self.support = svc.support_vectors_
        self.support_sq = np.einsum("ij,ij->i", self.support, self.support)
        self.gamma = svc._gamma
        self.dual = svc._dual_coef_
        self.intercept = svc._intercept_
        starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
        self.ranges = [slice(starts[i], starts[i + 1]) for i in range(len(svc.n_support_))]
        self.n_classes = len(svc.classes_)
        self.a = np.array([c.a_ for c in calibrated.calibrators])
        self.b = np.array([c.b_ for c in calibrated.calibrators])

    def decision_ovo(self, x: np.ndarray) -> np.ndarray:
        """Return libsvm's one-vs-one decision values, pairs (0,1), (0,2), (1,2), ..."""
        sq = np.einsum("ij,ij->i", x, x)[:, None] + self.support_sq[None, :]
        kernel = np.exp(-self.gamma * np.maximum(sq - 2.0 * x @ self.support.T, 0.0))
        out, pair = [], 0
        for i in range(self.n_classes):
            for j in range(i + 1, self.n_classes):
                si, sj = self.ranges[i], self.ranges[j]
                value = kernel[:, si] @ self.dual[j - 1, si] + kernel[:, sj] @ self.dual[i, sj]
                out.append(value + self.intercept[pair])
                pair += 1
        return np.column_stack(out)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Return the calibrated, normalised class probabilities."""
        ovo = self.decision_ovo(x)
        scores = _ovr_decision_function(ovo < 0, -ovo, self.n_classes)
        proba = expit(-(self.a * scores + self.b))
        total = proba.sum(axis=1, keepdims=True)
        proba = np.divide(
            proba, total, out=np.full_like(proba, 1 / self.n_classes), where=total != 0
        )
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


class _Forest:
    """RandomForestClassifier walked in numpy for small requests, sklearn for big ones.

    For a handful of rows, stepping every tree down one level at a time with numpy
    beats a hundred separate tree calls; past ``SMALL`` rows sklearn's own loop wins.
    """

    SMALL = 64

    def __init__(self, model: RandomForestClassifier) -> None:
        trees = [t.tree_ for t in model.estimators_]
        if any(t.n_outputs != 1 for t in trees):
            raise Unsupported("multi-output forest")
        width = max(t.node_count for t in trees)
        n = len(trees)
        self.left = np.full((n, width), -1, dtype=np.intp)
        self.right = np.full((n, width), -1, dtype=np.intp)
        self.feature = np.zeros((n, width), dtype=np.intp)
        self.threshold = np.zeros((n, width))
        self.value = np.zeros((n, width, len(model.classes_)))
        for i, t in enumerate(trees):
            k = t.node_count
            self.left[i, :k], self.right[i, :k] = t.children_left, t.children_right
            self.feature[i, :k] = np.maximum(t.feature, 0)
            self.threshold[i, :k] = t.threshold
            value = t.value[:, 0, :]
            self.value[i, :k] = value / value.sum(axis=1, keepdims=True)
        self.depth = max(t.max_depth for t in trees)
        self.trees = np.arange(n)
        self.fallback = _Estimator(model)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Return the mean over trees of each reached leaf's class fractions."""
        if len(x) > self.SMALL:
            return self.fallback.predict_proba(x)
        # Trees compare float32 inputs against their thresholds, as sklearn does.
        x = x.astype(np.float32).astype(np.float64)
        rows = np.arange(len(x))[:, None]
        node = np.zeros((len(x), len(self.trees)), dtype=np.intp)
        for _ in range(self.depth):
            left = self.left[self.trees, node]
            goes_left = x[rows, self.feature[self.trees, node]] <= self.threshold[self.trees, node]
            step = np.where(goes_left, left, self.right[self.trees, node])
            node = np.where(left == -1, node, step)
        return self.value[self.trees, node].mean(axis=1)


class _Estimator:
    """Any other fitted classifier: its own predict_proba without per-call re-checks."""

    def __init__(self, model) -> None:
        self.model = model

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Call the estimator's predict_proba with sklearn's input checks off."""
        # Rows are validated before they get here.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            return self.model.predict_proba(x)


def _mirror(model):
    """Return the fastest faithful stand-in for a fitted final estimator."""
    if isinstance(model, LogisticRegression):
        return _Softmax(model)
    if isinstance(model, RandomForestClassifier):
        return _Forest(model)
    if isinstance(model, CalibratedClassifierCV):
        try:
            return _CalibratedRbfSvm(model)
        except Unsupported:
            return _Estimator(model)
    return _Estimator(model)


class FastPredictor:
    """predict_proba for rows given as floats in the contract's feature order."""

    def __init__(self, pipeline: Pipeline) -> None:
        """Mirror a fitted Pipeline(ColumnTransformer, estimator); raise Unsupported if unable."""
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise Unsupported("expected Pipeline(preprocess, model)")
        preprocess, self.estimator = pipeline.steps[0][1], pipeline.steps[1][1]
        self.model = _mirror(self.estimator)
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
        return self.model.predict_proba(self.transform(x))


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
