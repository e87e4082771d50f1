"""Finding the champion's training data through a real MLflow SQLite store."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from penguins import reference as reference_module
from penguins.config import DEFAULT_DATA_PATH, DEFAULT_MODEL_ALIAS, DEFAULT_MODEL_NAME
from penguins.features import load_dataset
from penguins.reference import (
    ReferenceDataError,
    ReferenceTracker,
    ReferenceUnavailable,
    load_reference,
    resolve_alias,
)
from tests.monitoring_support import register_reference


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """Return the cleaned data set."""
    return load_dataset(DEFAULT_DATA_PATH)


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path]:
    """Return (tracking_uri, artifact_dir) of an empty MLflow SQLite store."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts"


def test_a_missing_sqlite_store_is_reported_and_not_created(tmp_path: Path, caplog):
    db = tmp_path / "mlflow.db"
    tracker = ReferenceTracker(f"sqlite:///{db}", DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS)
    with caplog.at_level(logging.WARNING, logger="penguins.reference"):
        assert tracker.current() is None
        tracker.refresh_seconds = 0
        assert tracker.current() is None
    assert not db.exists()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no tracking store yet" in lines[0], lines


def test_an_unregistered_model_and_a_missing_alias_are_unavailable(store, data):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, data, model_name="other-model")
    with pytest.raises(ReferenceUnavailable, match="no model"):
        resolve_alias(tracking_uri, DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS)
    with pytest.raises(ReferenceUnavailable, match="challenger"):
        resolve_alias(tracking_uri, "other-model", "challenger")


def test_load_reference_returns_the_champion_runs_training_data(store, data):
    tracking_uri, artifacts = store
    train = data.sample(frac=0.8, random_state=0)
    version, run_id = register_reference(tracking_uri, artifacts, train)
    reference = load_reference(tracking_uri, DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS)
    assert (reference.version, reference.run_id) == (version, run_id)
    pd.testing.assert_frame_equal(
        reference.data, train.reset_index(drop=True), check_dtype=False, check_exact=False
    )


def test_a_champion_without_the_artifact_is_an_error(store):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, None)
    with pytest.raises(ReferenceDataError, match="reference/training_data.csv"):
        load_reference(tracking_uri, DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS)


def test_an_artifact_without_the_features_is_an_error(store, data):
    tracking_uri, artifacts = store
    register_reference(tracking_uri, artifacts, data.drop(columns=["sex_encoded"]))
    with pytest.raises(ReferenceDataError, match="sex_encoded"):
        load_reference(tracking_uri, DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS)


def test_tracker_follows_the_alias_no_more_often_than_the_refresh_period(store, data, monkeypatch):
    tracking_uri, artifacts = store
    downloads: list[str] = []
    real_download = reference_module.download_reference

    def counting_download(uri: str, run_id: str) -> pd.DataFrame:
        downloads.append(run_id)
        return real_download(uri, run_id)

    monkeypatch.setattr(reference_module, "download_reference", counting_download)
    clock = FakeClock()
    tracker = ReferenceTracker(
        tracking_uri, DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS, refresh_seconds=30, clock=clock
    )
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
    from mlflow import MlflowClient

    MlflowClient(tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS, v1
    )
    clock.now = 90
    assert tracker.current().version == v1
    assert downloads == [run1, run2]


def test_tracker_keeps_the_last_good_reference_when_a_refresh_fails(store, data):
    tracking_uri, artifacts = store
    clock = FakeClock()
    tracker = ReferenceTracker(
        tracking_uri, DEFAULT_MODEL_NAME, DEFAULT_MODEL_ALIAS, refresh_seconds=30, clock=clock
    )
    v1, _ = register_reference(tracking_uri, artifacts, data)
    assert tracker.current().version == v1
    register_reference(tracking_uri, artifacts, None)  # a new champion lacking the artifact
    clock.now = 30
    with pytest.raises(ReferenceDataError):
        tracker.current()
    assert tracker.current().version == v1  # no new look-up until the next period


def test_the_champion_trained_by_modelling_brings_its_training_split(trained_store, data):
    from mlflow import MlflowClient

    reference = load_reference(trained_store.tracking_uri, trained_store.model_name, "champion")
    uri = trained_store.tracking_uri
    champion = MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(
        trained_store.model_name, trained_store.alias
    )
    assert (reference.version, reference.run_id) == (str(champion.version), champion.run_id)
    # The training split of a stratified 80/20 split of the data, with the label.
    assert len(reference.data) == pytest.approx(0.8 * len(data), abs=1)
    assert set(reference.data["species"]) == set(data["species"])
    merged = reference.data.merge(data.drop_duplicates(), how="left", indicator=True)
    assert (merged["_merge"] == "both").all()  # every reference row is a row of the data
