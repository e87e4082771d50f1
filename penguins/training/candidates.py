"""The three candidate algorithms, each a complete scikit-learn pipeline with fixed seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from penguins.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

SEED = 42


@dataclass(frozen=True)
class Candidate:
    """One algorithm to train: its name, how to build its estimator, its complexity rank."""

    name: str
    build: Callable[[], ClassifierMixin]
    params: dict
    complexity: int


def _preprocessor(scale: bool) -> ColumnTransformer:
    """One-hot the codes (islands are not ordered); scale numbers where the model needs it."""
    numeric = StandardScaler() if scale else "passthrough"
    return ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_FEATURES)),
            ("codes", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )


def _logistic_regression(params: dict) -> Pipeline:
    """Build the scaled logistic regression."""
    return Pipeline([("preprocess", _preprocessor(True)), ("model", LogisticRegression(**params))])


def _svm(params: dict) -> Pipeline:
    """Build the scaled RBF support vector machine with calibrated probabilities.

    SVC(probability=True) is deprecated in scikit-learn 1.9; calibration is the
    supported way to get probabilities, and ensemble=False keeps one SVC.
    """
    svc = SVC(C=params["C"], kernel=params["kernel"], random_state=SEED)
    calibrated = CalibratedClassifierCV(
        svc, method=params["calibration"], cv=params["calibration_cv"], ensemble=False
    )
    return Pipeline([("preprocess", _preprocessor(True)), ("model", calibrated)])


def _random_forest(params: dict) -> Pipeline:
    """Build the random forest; trees need no scaling."""
    return Pipeline(
        [("preprocess", _preprocessor(False)), ("model", RandomForestClassifier(**params))]
    )


def candidates() -> list[Candidate]:
    """Return the three candidate algorithms with fixed seeds, simplest first."""
    lr = {"C": 1.0, "max_iter": 1000}
    svm = {"C": 1.0, "kernel": "rbf", "calibration": "sigmoid", "calibration_cv": 5}
    rf = {"n_estimators": 100, "max_depth": 8, "random_state": SEED}
    return [
        Candidate("logistic_regression", lambda: _logistic_regression(lr), lr, 0),
        Candidate("svm", lambda: _svm(svm), svm, 1),
        Candidate("random_forest", lambda: _random_forest(rf), rf, 2),
    ]
