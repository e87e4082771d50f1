"""Registering the best model as a new version and deciding whether the alias moves to it."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient

from penguins.registry import ALGORITHM_TAG, get_alias_version
from penguins.training.evaluation import Result, Split, score


@dataclass
class Promotion:
    """The outcome of registering the best model."""

    version: str
    moved: bool
    reason: str
    previous_version: str | None


def decide(
    alias: str,
    current_version: str | None,
    current_accuracy: float | None,
    new_accuracy: float,
    force: bool,
) -> tuple[bool, str]:
    """Return whether the alias moves to the new version, and the reason to print.

    It moves unless the current version scores strictly better; a tie moves it,
    so retraining on the same data keeps the alias on the newest version.
    """
    if current_version is None:
        return True, f"no {alias} yet"
    if force:
        return True, f"--force (current {alias} v{current_version}: {current_accuracy:.4f})"
    if current_accuracy > new_accuracy:
        return False, (
            f"current {alias} v{current_version} scores better on this test split "
            f"({current_accuracy:.4f} > {new_accuracy:.4f}); use --force to move it anyway"
        )
    return True, (
        f"scores {new_accuracy:.4f} >= current {alias} v{current_version} ({current_accuracy:.4f})"
    )


def _accuracy_of(model_name: str, version: str, split_: Split) -> float:
    """Score a registered version on this run's test split."""
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    return score(model, split_.x_test, split_.y_test)["accuracy"]


def _register(best: Result, model_name: str) -> str:
    """Register the best run's model as a new version tagged with its algorithm and score."""
    tags = {ALGORITHM_TAG: best.candidate.name, "test_accuracy": f"{best.metrics['accuracy']:.4f}"}
    return str(mlflow.register_model(best.model_uri, model_name, tags=tags).version)


def promote(
    client: MlflowClient,
    best: Result,
    split_: Split,
    model_name: str,
    alias: str,
    force: bool,
) -> Promotion:
    """Register the best model as a new version and move the alias unless the current one wins.

    The current version is scored on this run's test split, so both are judged on
    the same rows.
    """
    current = get_alias_version(client, model_name, alias)
    previous = None if current is None else str(current.version)
    current_accuracy = None if previous is None else _accuracy_of(model_name, previous, split_)
    version = _register(best, model_name)
    moved, reason = decide(alias, previous, current_accuracy, best.metrics["accuracy"], force)
    if moved:
        client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promotion", "promoted" if moved else "kept")
    return Promotion(version, moved, reason, previous)
