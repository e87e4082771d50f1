"""Judging the candidates: one shared split, their scores, and the rule that picks the best."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from penguins.features import FEATURES, TARGET
from penguins.training.candidates import SEED, Candidate

TEST_SIZE = 0.2
CV_FOLDS = 5
# The selection rule, in order: test accuracy, then test f1_macro, then CV accuracy
# mean; a remaining tie goes to the simpler, faster model (lower complexity rank).
SELECTION_RULE = (
    "highest test accuracy, then test f1_macro, then CV accuracy mean (4 decimals); "
    "ties go to the simpler model (logistic_regression < svm < random_forest)"
)


@dataclass
class Split:
    """The one stratified held-out split shared by all candidates."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series

    @property
    def training(self) -> pd.DataFrame:
        """Return the training part as one table: the features and the species."""
        return self.x_train.assign(**{TARGET: self.y_train})

    @property
    def testing(self) -> pd.DataFrame:
        """Return the test part as one table: the features and the species."""
        return self.x_test.assign(**{TARGET: self.y_test})


def split(data: pd.DataFrame) -> Split:
    """Split the cleaned data into stratified train and test parts with a fixed seed."""
    x_train, x_test, y_train, y_test = train_test_split(
        data[list(FEATURES)],
        data[TARGET],
        test_size=TEST_SIZE,
        stratify=data[TARGET],
        random_state=SEED,
    )
    return Split(x_train, x_test, y_train, y_test)


def score(model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Return accuracy and the macro-averaged f1, precision and recall on one set."""
    pred = model.predict(x)
    return {
        "accuracy": accuracy_score(y, pred),
        "f1_macro": f1_score(y, pred, average="macro"),
        "precision_macro": precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": recall_score(y, pred, average="macro", zero_division=0),
    }


def fit_and_evaluate(candidate: Candidate, split_: Split) -> tuple[Pipeline, dict[str, float]]:
    """Cross-validate a candidate on the training part, fit it there, score it on the test part.

    Returns the fitted model and its metrics: the test scores, the CV accuracy
    (mean, std) and how long the final fit took.
    """
    cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=SEED)
    cv_scores = cross_val_score(
        candidate.build(), split_.x_train, split_.y_train, cv=cv, scoring="accuracy"
    )
    model = candidate.build()
    started = time.perf_counter()
    model.fit(split_.x_train, split_.y_train)
    fit_seconds = time.perf_counter() - started
    metrics = score(model, split_.x_test, split_.y_test)
    metrics |= {
        "cv_accuracy_mean": float(cv_scores.mean()),
        "cv_accuracy_std": float(cv_scores.std()),
        "fit_time_seconds": fit_seconds,
    }
    return model, metrics


@dataclass
class Result:
    """What training one candidate produced: its run, its logged model, its scores."""

    candidate: Candidate
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    model: Pipeline = field(repr=False)

    def rank_key(self) -> tuple:
        """Return the sort key of the selection rule: larger is better."""
        m = self.metrics
        return (
            round(m["accuracy"], 4),
            round(m["f1_macro"], 4),
            round(m["cv_accuracy_mean"], 4),
            -self.candidate.complexity,
        )


def pick_best(results: list[Result]) -> Result:
    """Return the best result by the selection rule."""
    return max(results, key=Result.rank_key)
