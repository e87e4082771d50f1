"""Finding the champion's training data through a real MLflow SQLite store."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from penguins.config import sqlite_uri
from penguins.monitoring import reference as reference_module
from penguins.monitoring.collector import MonitoringCollector
from penguins.monitoring.reference import Reference, ReferenceDataError, ReferenceTracker
from penguins.monitoring.settings import MonitorSettings
from penguins.predlog import open_log
from penguins.registry import REFERENCE_ARTIFACT, ModelPointer
from penguins.traffic.inputs import sample_inputs
from tests.support.monitoring import log_inputs
from tests.support.stores import store_client

DEFAULTS = MonitorSettings()
MODEL_NAME, ALIAS = DEFAULTS.model_name, DEFAULTS.alias


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


def register_reference(
    tracking_uri: str,
    artifact_dir: Path,
    data: pd.DataFrame | None,
    model_name: str = MODEL_NAME,
    alias: str | None = ALIAS,
) -> tuple[str, str]:
    """Log a run with ``data`` as training-data artifact and register it; return (version, run_id).

    With ``data`` None the run has no artifact; with ``alias`` None the alias does not move.
    """
    from mlflow.exceptions import MlflowException

    client = store_client(tracking_uri)
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


def tracker_of(
    tracking_uri: str,
    model_name: str = MODEL_NAME,
    alias: str = ALIAS,
    refresh_seconds: float = 0,
    clock: FakeClock | None = None,
) -> ReferenceTracker:
    """Return a tracker of ``models:/model_name@alias`` (looked up at every call by default)."""
    pointer = ModelPointer.of_alias(tracking_uri, model_name, alias)
    return ReferenceTracker(pointer, refresh_seconds, clock=clock or FakeClock())


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path]:
    """Return (tracking_uri, artifact_dir) of an empty MLflow SQLite store."""
    return sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "artifacts"


def test_an_unregistered_model_and_a_missing_alias_give_no_reference(store, data, caplog):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, data, model_name="other-model")
    with caplog.at_level(logging.WARNING, logger="penguins.registry"):
        assert tracker_of(tracking_uri).current() is None
        assert tracker_of(tracking_uri, "other-model", "challenger").current() is None
    lines = [r.getMessage() for r in caplog.records if r.name == "penguins.registry"]
    assert len(lines) == 2, lines
    assert f"no model models:/{MODEL_NAME}@{ALIAS}" in lines[0], lines
    assert "no model models:/other-model@challenger" in lines[1], lines


def test_the_reference_is_the_champion_runs_training_data(store, data):
    tracking_uri, artifacts = store
    train = data.sample(frac=0.8, random_state=0)
    version, run_id = register_reference(tracking_uri, artifacts, train)
    reference = tracker_of(tracking_uri).current()
    assert (reference.model_name, reference.version, reference.run_id) == (
        MODEL_NAME,
        version,
        run_id,
    )
    pd.testing.assert_frame_equal(
        reference.data, train.reset_index(drop=True), check_dtype=False, check_exact=False
    )


def test_a_champion_without_the_artifact_is_an_error(store):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, None)
    with pytest.raises(ReferenceDataError, match="reference/training_data.csv"):
        tracker_of(tracking_uri).current()


def test_an_artifact_without_the_features_is_an_error(store, data):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, data.drop(columns=["sex_encoded"]))
    with pytest.raises(ReferenceDataError, match="sex_encoded"):
        tracker_of(tracking_uri).current()


def test_an_artifact_with_too_few_rows_is_an_error(store, data):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, data.head(10))
    with pytest.raises(ReferenceDataError, match="10 complete rows"):
        tracker_of(tracking_uri).current()


def test_tracker_follows_the_alias_no_more_often_than_the_refresh_period(store, data, monkeypatch):
    tracking_uri, artifacts = store
    downloads: list[str] = []
    real_download = reference_module.download_reference

    def counting_download(uri: str, run_id: str) -> pd.DataFrame:
        """Download as the tracker does, noting the run."""
        downloads.append(run_id)
        return real_download(uri, run_id)

    monkeypatch.setattr(reference_module, "download_reference", counting_download)
    clock = FakeClock()
    tracker = tracker_of(tracking_uri, refresh_seconds=30, clock=clock)
    assert tracker.current() is None  # nothing registered yet

    clock.now = 30
    v1, run1 = register_reference(tracking_uri, artifacts, data.head(100))
    assert tracker.current().version == v1

    v2, run2 = register_reference(tracking_uri, artifacts, data.tail(100))
    clock.now = 59  # the alias moved, but the next look-up is not due yet
    assert tracker.current().version == v1
    clock.now = 60
    current = tracker.current()
    assert (current.version, current.run_id) == (v2, run2)
    assert len(current.data) == 100 and current.data["body_mass_g"].iloc[0] == pytest.approx(
        data.tail(100)["body_mass_g"].iloc[0]
    )

    # Moving the alias back reuses the cached reference of version 1.
    store_client(tracking_uri).set_registered_model_alias(MODEL_NAME, ALIAS, v1)
    clock.now = 90
    assert tracker.current().version == v1
    assert downloads == [run1, run2]


def test_tracker_keeps_the_last_good_reference_when_a_refresh_fails(store, data):
    tracking_uri, artifacts = store
    clock = FakeClock()
    tracker = tracker_of(tracking_uri, refresh_seconds=30, clock=clock)
    v1, _ = register_reference(tracking_uri, artifacts, data)
    assert tracker.current().version == v1
    register_reference(tracking_uri, artifacts, None)  # a new champion lacking the artifact
    clock.now = 30
    with pytest.raises(ReferenceDataError):
        tracker.current()
    assert tracker.current().version == v1  # no new look-up until the next period
    clock.now = 60  # a broken champion is tried again at every due look-up, without back-off
    with pytest.raises(ReferenceDataError):
        tracker.current()
    assert tracker.current().version == v1


def test_an_unreadable_store_raises_and_keeps_the_last_good_reference(store, data, tmp_path):
    tracking_uri, artifacts = store
    clock = FakeClock()
    tracker = tracker_of(tracking_uri, refresh_seconds=30, clock=clock)
    v1, _ = register_reference(tracking_uri, artifacts, data)
    assert tracker.current().version == v1
    (tmp_path / "mlflow.db").write_bytes(b"not a database" * 100)
    clock.now = 30
    with pytest.raises(Exception, match="not a database"):
        tracker.current()
    assert tracker.current().version == v1


def test_the_collector_counts_every_failed_reference_look_up(store, data, tmp_path):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, None)
    log = open_log(sqlite_uri(tmp_path / "predictions.db"))
    try:
        log_inputs(log, sample_inputs(data, 300, np.random.default_rng(19)))
        collector = MonitoringCollector(log, tracker_of(tracking_uri).current)
        for scrape in (1, 2, 3):
            samples = {
                (s.name, s.labels.get("source")): s.value
                for family in collector.collect()
                for s in family.samples
            }
            assert ("ml_drift_detected", None) not in samples
            assert samples[("ml_drift_samples", None)] == 300
            assert samples[("exporter_collect_errors_total", "reference")] == scrape
    finally:
        log.close()


def test_the_champion_trained_by_modelling_brings_its_training_split(trained_store, data):
    uri = trained_store.tracking_uri
    reference = tracker_of(uri, trained_store.model_name, trained_store.alias).current()
    assert isinstance(reference, Reference)
    champion = store_client(uri).get_model_version_by_alias(
        trained_store.model_name, trained_store.alias
    )
    assert (reference.version, reference.run_id) == (str(champion.version), champion.run_id)
    # The training split of a stratified 80/20 split of the data, with the label.
    assert len(reference.data) == pytest.approx(0.8 * len(data), abs=1)
    assert set(reference.data["species"]) == set(data["species"])
    merged = reference.data.merge(data.drop_duplicates(), how="left", indicator=True)
    assert (merged["_merge"] == "both").all()  # every reference row is a row of the data
