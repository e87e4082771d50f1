"""Access to the MLflow tracking store and model registry, shared by every script."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

# Run artifact holding the training split (features + species): the drift reference.
REFERENCE_ARTIFACT = "reference/training_data.csv"
# Model-version tag naming the algorithm ("random_forest", ...).
ALGORITHM_TAG = "algorithm"


class StoreError(RuntimeError):
    """The tracking store cannot be reached or used."""


def limit_http_retries() -> None:
    """Make an unreachable HTTP tracking server fail in seconds, not minutes, unless set."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def connect(tracking_uri: str) -> MlflowClient:
    """Return a client for the store, checking that the store answers."""
    limit_http_retries()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many kinds here (HTTP, SQLAlchemy, OS errors)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot use tracking store {tracking_uri}: {first_line}") from exc
    return client


def get_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """Return the model version an alias points to, or None when model or alias is missing."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass(frozen=True)
class ModelDescription:
    """What the API and the exporter say about a served model version."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    algorithm: str
    metrics: dict[str, float]


def describe_version(
    client: MlflowClient, version: ModelVersion, alias: str | None
) -> ModelDescription:
    """Gather the algorithm and test metrics of a model version from its run."""
    metrics: dict[str, float] = {}
    algorithm = version.tags.get(ALGORITHM_TAG, "unknown")
    if version.run_id:
        run = client.get_run(version.run_id)
        metrics = dict(run.data.metrics)
        algorithm = version.tags.get(ALGORITHM_TAG) or run.data.params.get(ALGORITHM_TAG, algorithm)
    return ModelDescription(
        name=version.name,
        version=str(version.version),
        alias=alias,
        run_id=version.run_id,
        algorithm=algorithm,
        metrics=metrics,
    )
