"""Helpers for the monitoring tests: fill a prediction log, register a reference in MLflow."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from penguins.config import DEFAULT_MODEL_ALIAS, DEFAULT_MODEL_NAME
from penguins.features import FEATURES, TARGET
from penguins.predlog import PredictionLog, PredictionRecord
from penguins.registry import REFERENCE_ARTIFACT


def log_inputs(
    log: PredictionLog,
    inputs: pd.DataFrame,
    model_name: str = "random_forest",
    version: str = "1",
    predicted: Sequence[str] | None = None,
    created_at: float = 1.0,
) -> list[str]:
    """Record one prediction per input row (predicting the true species unless told); return ids."""
    species = list(predicted) if predicted is not None else list(inputs[TARGET])
    records = [
        PredictionRecord(
            id=uuid.uuid4().hex,
            created_at=created_at + i,
            model_name=model_name,
            model_version=version,
            features=[float(row[f]) for f in FEATURES],
            predicted_species=species[i],
            confidence=0.9,
        )
        for i, (_, row) in enumerate(inputs.iterrows())
    ]
    log.record(records)
    return [r.id for r in records]


def register_reference(
    tracking_uri: str,
    artifact_dir: Path,
    data: pd.DataFrame | None,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = DEFAULT_MODEL_ALIAS,
) -> tuple[str, str]:
    """Log a run with ``data`` as training-data artifact and register it; return (version, run_id).

    With ``data`` None the run has no artifact; with ``alias`` None the alias does not move.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # Explicit registry: training sets a process-wide registry URI that would win otherwise.
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name("penguins-monitoring-test")
    if experiment is None:
        experiment_id = client.create_experiment(
            "penguins-monitoring-test", artifact_location=artifact_dir.as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id)
    if data is not None:
        staging = artifact_dir / "staging" / run.info.run_id
        staging.mkdir(parents=True)
        path = staging / Path(REFERENCE_ARTIFACT).name
        data.to_csv(path, index=False)
        client.log_artifact(run.info.run_id, str(path), Path(REFERENCE_ARTIFACT).parent.as_posix())
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    if alias is not None:
        client.set_registered_model_alias(model_name, alias, version.version)
    return str(version.version), run.info.run_id
