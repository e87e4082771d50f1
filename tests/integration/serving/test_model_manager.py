"""Loading the served model from a real registry, following its alias, swapping versions."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import mlflow
import numpy as np
from prometheus_client import CollectorRegistry

from penguins.config import DEFAULT_DATA_PATH
from penguins.features import FEATURES, load_dataset
from penguins.registry import ModelPointer
from penguins.serving.fastpath import TOLERANCE, FastPredictor, verify
from penguins.serving.manager import ModelManager
from penguins.serving.metrics import ServingMetrics
from penguins.serving.model import verification_rows
from penguins.training.tracking import using_store
from tests.integration.serving.versions import champion_source, register_version

CHAMPION = "models:/penguins-classifier@champion"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


def manager_for(tracking_uri: str, uri: str = CHAMPION):
    """Return a manager with its own metrics registry and a hand-moved clock."""
    clock = FakeClock()
    metrics = ServingMetrics(CollectorRegistry())
    return ModelManager(ModelPointer(uri, tracking_uri), metrics, 10.0, clock=clock), clock


def reloads(manager: ModelManager, result: str) -> float:
    """Return ml_model_reloads_total for one result."""
    value = manager.metrics.registry.get_sample_value("ml_model_reloads_total", {"result": result})
    return value or 0.0


def test_alias_moves_are_followed_and_counted(store_copy):
    manager, _ = manager_for(store_copy)
    assert manager.refresh() == "swapped"  # start-up: not counted as a reload
    first = manager.current
    assert first.version == "1"
    assert reloads(manager, "success") == 0
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


def test_a_store_replaced_at_its_path_is_followed(store_copy, trained_store):
    """Each worker's MLflow engine keeps the file it opened; a new file is noticed by identity."""
    manager, _ = manager_for(store_copy)
    register_version(store_copy, **champion_source(store_copy))
    assert manager.refresh() == "swapped" and manager.current.version == "2"
    path = Path(store_copy.removeprefix("sqlite:///"))
    path.rename(path.with_name("moved-away.db"))  # the old store lives on, elsewhere
    shutil.copy(trained_store.root / "mlflow.db", path)  # a new store: champion v1
    assert manager.refresh() == "swapped"
    assert manager.current.version == "1"
    assert manager.refresh() == "unchanged"
    register_version(store_copy, **champion_source(store_copy))  # into the new file
    assert manager.refresh() == "swapped" and manager.current.version == "2"


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
    assert manager.reason
    # The run stays in the other store: the version is served without run metrics.
    register_version(empty_store, **champion_source(trained_store.tracking_uri))
    assert manager.refresh() == "swapped"
    assert manager.current.version == "1"
    assert manager.current.description.metrics == {}
    assert manager.reason is None
    assert reloads(manager, "success") == 1  # the first model after start-up counts


def test_an_unusable_store_is_reported_and_tried_again(tmp_path):
    (tmp_path / "mlflow.db").write_text("not a database")
    manager, _ = manager_for(f"sqlite:///{tmp_path}/mlflow.db")
    assert manager.refresh() == "unreachable"
    assert manager.current is None
    assert manager.watcher.error is not None
    assert manager.refresh() == "unreachable"
    assert (tmp_path / "mlflow.db").read_text() == "not a database"


def test_a_store_file_that_cannot_exist_is_missing_and_tried_again(tmp_path):
    """A store file under a regular file is never there: missing, and not created."""
    (tmp_path / "a-file").write_text("not a directory")
    manager, _ = manager_for(f"sqlite:///{tmp_path}/a-file/mlflow.db")
    assert manager.refresh() == "missing"
    assert manager.current is None
    assert f"{tmp_path}/a-file/mlflow.db" in manager.reason
    assert manager.refresh() == "missing"


def test_background_refresh_picks_up_a_new_version(store_copy):
    manager = ModelManager(
        ModelPointer(CHAMPION, store_copy),
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
    assert manager.watcher._thread is None


def test_the_champion_is_served_through_the_verified_fast_path(trained_store):
    manager, _ = manager_for(trained_store.tracking_uri)
    assert manager.refresh() == "swapped"
    served = manager.current
    assert served.fast is not None
    rows = verification_rows()[list(FEATURES)]
    expected = served.pipeline.predict_proba(rows)[:, served.column_order]
    got = served.predict_proba([tuple(r) for r in rows.itertuples(index=False)])
    assert np.max(np.abs(got - expected)) <= 1e-6


def test_fast_path_equals_the_logged_champion(trained_store):
    with using_store(trained_store.tracking_uri):
        pipeline = mlflow.sklearn.load_model(trained_store.model_uri)
    fast = FastPredictor(pipeline)
    assert verify(fast, pipeline, load_dataset(DEFAULT_DATA_PATH)) <= TOLERANCE
