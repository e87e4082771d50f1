"""Loading, smoke-testing and swapping the served model."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from penguins.features import FEATURES, SPECIES
from penguins.metrics import ServingMetrics
from penguins.served_model import (
    ModelLoadError,
    ModelManager,
    ModelSource,
    ServedModel,
    fast_predictor,
    smoke_rows,
    smoke_test,
    to_frame,
    verification_rows,
)
from tests.serving_fixtures import SAMPLE, champion_source, register_version


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


SAMPLE_ROW = (39.1, 18.7, 181.0, 3750.0, 0, 1)


def manager_for(tracking_uri: str, uri: str = "models:/penguins-classifier@champion"):
    """Return a manager with its own metrics registry and a hand-moved clock."""
    clock = FakeClock()
    metrics = ServingMetrics(CollectorRegistry())
    return ModelManager(ModelSource(uri, tracking_uri), metrics, 10.0, clock=clock), clock


def reloads(manager: ModelManager, result: str) -> float:
    """Return ml_model_reloads_total for one result."""
    value = manager.metrics.registry.get_sample_value("ml_model_reloads_total", {"result": result})
    return value or 0.0


class FakeModel:
    """A stand-in pipeline whose classes and probabilities a test chooses."""

    def __init__(self, classes=SPECIES, proba=None, error=None) -> None:
        """Answer ``proba`` for every row, or raise ``error``."""
        self.classes_ = np.array(classes)
        self._proba = proba if proba is not None else [0.2, 0.3, 0.5]
        self._error = error

    def predict_proba(self, frame):
        """Return the chosen probabilities, one row per input row."""
        if self._error:
            raise self._error
        return np.array([self._proba] * len(frame))


def test_to_frame_keeps_training_names_and_types():
    frame = to_frame([tuple(SAMPLE.values()), tuple(SAMPLE.values())])
    assert list(frame.columns) == list(FEATURES)
    assert [str(t) for t in frame.dtypes] == ["float64"] * 4 + ["int64"] * 2
    assert len(frame) == 2


def test_smoke_rows_cover_every_species():
    rows = smoke_rows()
    assert len(rows) == len(SPECIES)
    assert all(len(row) == len(FEATURES) for row in rows)


def test_smoke_test_returns_the_species_column_order():
    shuffled = FakeModel(classes=("Gentoo", "Adelie", "Chinstrap"))
    assert smoke_test(shuffled, smoke_rows()) == (1, 2, 0)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (FakeModel(classes=("Adelie", "Gentoo")), "classes"),
        (FakeModel(classes=("cat", "dog", "Gentoo")), "classes"),
        (FakeModel(proba=[0.5, 0.5, 0.5]), "summing to 1"),
        (FakeModel(proba=[np.nan, 0.5, 0.5]), "summing to 1"),
        (FakeModel(proba=[0.5, 0.5]), "shape"),
        (FakeModel(error=ValueError("columns missing")), "failed to predict"),
        (object(), "classes"),
    ],
    ids=["two classes", "wrong classes", "sum", "nan", "shape", "raises", "not a model"],
)
def test_smoke_test_rejects_what_cannot_serve(model, message):
    with pytest.raises(ModelLoadError, match=message):
        smoke_test(model, smoke_rows())


@pytest.mark.parametrize(
    ("uri", "alias"),
    [
        ("models:/penguins-classifier@champion", "champion"),
        ("models:/penguins-classifier@challenger", "challenger"),
        ("models:/penguins-classifier/3", None),
        ("runs:/abc/model", None),
        ("/srv/models/penguins", None),
    ],
)
def test_only_alias_uris_follow_the_registry(uri, alias):
    assert ModelSource(uri, "sqlite:///x.db").alias == alias


def test_alias_moves_are_followed_and_counted(store_copy):
    manager, _ = manager_for(store_copy)
    assert manager.refresh() == "swapped"  # start-up: not counted as a reload
    first = manager.current
    assert first.version == "1"
    assert manager.refresh() == "unchanged"
    register_version(store_copy, **champion_source(store_copy))
    assert manager.refresh() == "swapped"
    assert manager.current.version == "2"
    assert first.version == "1"  # the old object is untouched: in-flight requests finish on it
    assert reloads(manager, "success") == 1
    registry = manager.metrics.registry
    old = {"model": first.algorithm, "version": "1", "run_id": first.description.run_id}
    new = {**old, "version": "2"}
    assert registry.get_sample_value("ml_model_info", old) == 0
    assert registry.get_sample_value("ml_model_info", new) == 1


def test_a_broken_version_is_not_served_and_retried_with_back_off(store_copy, tmp_path):
    manager, clock = manager_for(store_copy)
    manager.refresh()
    register_version(store_copy, str(tmp_path / "no-such-model"), {"algorithm": "svm"})
    assert manager.refresh() == "failed"
    assert manager.current.version == "1"
    assert reloads(manager, "failed") == 1
    clock.now += 5  # inside the 10 s back-off
    assert manager.refresh() == "waiting"
    clock.now += 10
    assert manager.refresh() == "failed"
    assert reloads(manager, "failed") == 2
    clock.now += 15  # back-off doubled to 20 s
    assert manager.refresh() == "waiting"
    assert reloads(manager, "failed") == 2


def test_a_good_version_after_a_broken_one_is_served(store_copy, tmp_path):
    manager, _ = manager_for(store_copy)
    manager.refresh()
    good = champion_source(store_copy)
    register_version(store_copy, str(tmp_path / "missing"), {"algorithm": "svm"})
    assert manager.refresh() == "failed"
    register_version(store_copy, **good)
    assert manager.refresh() == "swapped"
    assert manager.current.version == "3"


def test_a_missing_alias_leaves_nothing_served_until_it_appears(empty_store, trained_store):
    manager, _ = manager_for(empty_store)
    assert manager.refresh() == "missing"
    assert manager.current is None
    # The run stays in the other store: the version is served without run metrics.
    register_version(empty_store, **champion_source(trained_store.tracking_uri))
    assert manager.refresh() == "swapped"
    assert manager.current.version == "1"
    assert manager.current.description.metrics == {}
    assert reloads(manager, "success") == 1  # the first model after start-up counts


def test_an_unusable_store_is_reported_and_tried_again(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    manager, _ = manager_for(f"sqlite:///{tmp_path}/a-file/mlflow.db")
    assert manager.refresh() == "unreachable"
    assert manager.current is None
    assert manager.refresh() == "unreachable"


def test_background_refresh_picks_up_a_new_version(store_copy):
    manager = ModelManager(
        ModelSource("models:/penguins-classifier@champion", store_copy),
        ServingMetrics(CollectorRegistry()),
        refresh_seconds=0.1,
    )
    manager.refresh()
    manager.start()
    try:
        register_version(store_copy, **champion_source(store_copy))
        deadline = time.monotonic() + 20
        while manager.current.version != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.current.version == "2"
    finally:
        manager.stop()
    assert manager._thread is None


def test_the_champion_is_served_through_the_verified_fast_path(trained_store):
    manager, _ = manager_for(trained_store.tracking_uri)
    assert manager.refresh() == "swapped"
    served = manager.current
    assert served.fast is not None
    rows = verification_rows()[list(FEATURES)]
    expected = served.pipeline.predict_proba(rows)[:, served.column_order]
    got = served.predict_proba([tuple(r) for r in rows.itertuples(index=False)])
    assert np.max(np.abs(got - expected)) <= 1e-6


def test_a_pipeline_the_fast_path_cannot_mirror_is_served_by_scikit_learn():
    model = FakeModel()
    assert fast_predictor(model) is None
    served = ServedModel(model, None, "uri", None, (0, 1, 2), fast_predictor(model))
    assert served.predict_proba([SAMPLE_ROW]).tolist() == [[0.2, 0.3, 0.5]]
