"""The exporter's collector against a real prediction log and a reference from the data set."""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from prometheus_client import CollectorRegistry

from penguins.config import sqlite_uri
from penguins.features import FEATURES, SPECIES
from penguins.monitoring.collector import ERROR_SOURCES, MonitoringCollector
from penguins.monitoring.drift import PSI_DRIFT, PSI_WATCH
from penguins.monitoring.reference import Reference
from penguins.monitoring.settings import MonitorSettings
from penguins.predlog import PredictionLog, open_log
from penguins.traffic.inputs import DRIFT_SHIFT, sample_inputs
from tests.support.monitoring import log_inputs


@pytest.fixture(scope="module")
def reference(data: pd.DataFrame) -> Reference:
    """Return a champion reference: an 80% training-like split of the data."""
    return Reference("penguins-classifier", "3", "run-abc", data.sample(frac=0.8, random_state=0))


@pytest.fixture
def log(tmp_path: Path):
    """Return an empty prediction log in a temporary directory."""
    log = open_log(sqlite_uri(tmp_path / "predictions.db"))
    yield log
    log.close()


def scrape(log, reference, **settings) -> CollectorRegistry:
    """Return a registry of its own holding a collector over ``log`` and ``reference``."""
    registry = CollectorRegistry()
    collector = MonitoringCollector(log, lambda: reference, MonitorSettings(**settings))
    registry.register(collector)
    return registry


def psi_of(registry: CollectorRegistry) -> dict[str, float | None]:
    """Return the exported PSI of every feature."""
    return {f: registry.get_sample_value("ml_feature_drift_psi", {"feature": f}) for f in FEATURES}


def errors(registry: CollectorRegistry, source: str) -> float | None:
    """Return the exported error count of a source."""
    return registry.get_sample_value("exporter_collect_errors_total", {"source": source})


def test_in_distribution_inputs_give_low_psi_and_no_drift(log, data, reference):
    log_inputs(log, sample_inputs(data, 1000, np.random.default_rng(11)))
    registry = scrape(log, reference)
    scores = psi_of(registry)
    assert all(value is not None and value < PSI_WATCH for value in scores.values()), scores
    assert registry.get_sample_value("ml_drift_detected") == 0
    assert registry.get_sample_value("ml_drift_samples") == 1000
    info = {"version": "3", "run_id": "run-abc"}
    assert registry.get_sample_value("ml_drift_reference_info", info) == 1


def test_shifted_inputs_drift_on_the_shifted_features_only(log, data, reference):
    log_inputs(log, sample_inputs(data, 1000, np.random.default_rng(12), drift=True))
    registry = scrape(log, reference)
    scores = psi_of(registry)
    for feature, value in scores.items():
        if feature in DRIFT_SHIFT:
            assert value > PSI_DRIFT, scores
        else:
            assert value < PSI_WATCH, scores
    assert registry.get_sample_value("ml_drift_detected") == 1


def test_drift_covers_only_the_newest_window(log, data, reference):
    log_inputs(log, sample_inputs(data, 600, np.random.default_rng(13), drift=True))
    log_inputs(log, sample_inputs(data, 500, np.random.default_rng(14)), created_at=1e6)
    assert scrape(log, reference).get_sample_value("ml_drift_detected") == 1
    recent = scrape(log, reference, drift_window=500)
    assert recent.get_sample_value("ml_drift_detected") == 0
    assert recent.get_sample_value("ml_drift_samples") == 500


def test_too_few_inputs_or_no_reference_export_no_drift(log, data, reference):
    log_inputs(log, sample_inputs(data, 150, np.random.default_rng(15), drift=True))
    few = scrape(log, reference, drift_min_samples=200)
    assert psi_of(few) == dict.fromkeys(FEATURES)
    assert few.get_sample_value("ml_drift_detected") is None
    assert few.get_sample_value("ml_drift_samples") == 150
    assert scrape(log, reference, drift_min_samples=150).get_sample_value("ml_drift_detected") == 1

    none = scrape(log, None, drift_min_samples=150)
    assert none.get_sample_value("ml_drift_detected") is None
    assert none.get_sample_value("system_memory_usage_percent") is not None
    assert errors(none, "reference") == 0  # no champion yet is a state, not a failure


def label(log: PredictionLog, data: pd.DataFrame, n: int, version: str, rng) -> list[bool]:
    """Log ``n`` predictions of a version, wrong at random, feed all back; return correctness."""
    inputs = sample_inputs(data, n, rng)
    wrong = rng.random(n) < 0.3
    predicted = [
        SPECIES[(SPECIES.index(s) + 1) % 3] if w else s
        for s, w in zip(inputs["species"], wrong, strict=True)
    ]
    ids = log_inputs(log, inputs, version=version, predicted=predicted)
    for prediction_id, actual in zip(ids, inputs["species"], strict=True):
        assert log.attach_feedback(prediction_id, actual) is not None
    return [not w for w in wrong]


def test_live_accuracy_is_the_share_correct_over_the_newest_labels(log, data, reference):
    rng = np.random.default_rng(16)
    old = label(log, data, 150, "1", rng)  # labelled first, so partly outside the window
    new = label(log, data, 120, "2", rng)
    registry = scrape(log, reference, accuracy_window=200, accuracy_min_labels=20)
    window_old = old[-(200 - len(new)) :]
    expected = {"1": sum(window_old) / len(window_old), "2": sum(new) / len(new)}
    for version, accuracy in expected.items():
        labels = {"model": "random_forest", "version": version}
        assert registry.get_sample_value("ml_model_live_accuracy", labels) == pytest.approx(
            accuracy
        )
    assert registry.get_sample_value(
        "ml_model_live_accuracy_labels", {"model": "random_forest", "version": "1"}
    ) == len(window_old)
    # Over every label the old version scores differently, so the window did matter.
    assert sum(old) / len(old) != pytest.approx(expected["1"])


def test_too_few_labels_give_no_live_accuracy(log, data, reference):
    rng = np.random.default_rng(17)
    label(log, data, 19, "1", rng)
    log_inputs(log, sample_inputs(data, 100, rng), version="1")  # unlabelled: no help
    registry = scrape(log, reference, accuracy_min_labels=20)
    labels = {"model": "random_forest", "version": "1"}
    assert registry.get_sample_value("ml_model_live_accuracy", labels) is None
    assert registry.get_sample_value("ml_model_live_accuracy_labels", labels) == 19
    label(log, data, 1, "1", rng)
    assert (
        scrape(log, reference, accuracy_min_labels=20).get_sample_value(
            "ml_model_live_accuracy", labels
        )
        is not None
    )


def test_system_gauges_are_percentages(log, reference, tmp_path):
    registry = scrape(log, reference, disk_path=str(tmp_path))
    for name in ("system_cpu_usage_percent", "system_memory_usage_percent",
                 "system_disk_usage_percent"):  # fmt: skip
        value = registry.get_sample_value(name)
        assert value is not None and 0 <= value <= 100, (name, value)
    assert registry.get_sample_value("system_disk_usage_percent") == pytest.approx(
        psutil.disk_usage(str(tmp_path)).percent, abs=1.0
    )
    assert all(errors(registry, source) == 0 for source in ERROR_SOURCES)


def test_a_failing_psutil_call_costs_only_its_own_gauge(log, reference, monkeypatch, caplog):
    def broken() -> None:
        """Fail as psutil does when /proc cannot be read."""
        raise PermissionError("/proc/meminfo: permission denied")

    registry = scrape(log, reference)
    monkeypatch.setattr(psutil, "virtual_memory", broken)
    with caplog.at_level(logging.ERROR, logger="penguins.monitoring.collector"):
        for _ in range(3):
            list(registry.collect())  # three scrapes
        assert registry.get_sample_value("system_memory_usage_percent") is None
        assert registry.get_sample_value("system_cpu_usage_percent") is not None
        assert registry.get_sample_value("system_disk_usage_percent") is not None
    assert errors(registry, "cpu") == 0 and errors(registry, "disk") == 0
    assert errors(registry, "memory") >= 3
    monkeypatch.undo()
    before = errors(registry, "memory")
    assert registry.get_sample_value("system_memory_usage_percent") is not None
    assert errors(registry, "memory") == before  # recovered: the count stops growing
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "memory" in lines[0] and "permission denied" in lines[0], lines


def test_a_broken_prediction_log_leaves_the_system_metrics(log, data, reference, tmp_path):
    log_inputs(log, sample_inputs(data, 300, np.random.default_rng(18)))
    with closing(sqlite3.connect(tmp_path / "predictions.db")) as conn, conn:
        conn.execute("DROP TABLE predictions")
    registry = scrape(log, reference)
    assert registry.get_sample_value("system_cpu_usage_percent") is not None
    assert registry.get_sample_value("ml_drift_detected") is None
    assert errors(registry, "prediction_log") > 0


def test_a_failing_reference_lookup_is_counted(log, data):
    def unreachable() -> Reference:
        """Fail as a look-up does when the tracking server is down."""
        raise ConnectionError("tracking server down")

    log_inputs(log, sample_inputs(data, 300, np.random.default_rng(19)))
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(log, unreachable))
    assert registry.get_sample_value("ml_drift_detected") is None
    assert registry.get_sample_value("ml_drift_samples") == 300
    assert errors(registry, "reference") == 3


def test_the_drift_threshold_setting_decides_what_counts_as_drift(log, data, reference):
    log_inputs(log, sample_inputs(data, 1000, np.random.default_rng(20)))
    assert scrape(log, reference).get_sample_value("ml_drift_detected") == 0
    strict = scrape(log, reference, drift_threshold=1e-9)
    assert strict.get_sample_value("ml_drift_detected") == 1


def test_every_contract_metric_is_exported_with_its_type(log, data, reference):
    enough = MonitorSettings().drift_min_samples
    log_inputs(log, sample_inputs(data, enough, np.random.default_rng(21)))
    label(log, data, 30, "1", np.random.default_rng(22))
    families = {family.name: family.type for family in scrape(log, reference).collect()}
    assert families == {
        "system_cpu_usage_percent": "gauge",
        "system_memory_usage_percent": "gauge",
        "system_disk_usage_percent": "gauge",
        "ml_model_live_accuracy": "gauge",
        "ml_model_live_accuracy_labels": "gauge",
        "ml_drift_reference_info": "gauge",
        "ml_drift_samples": "gauge",
        "ml_feature_drift_psi": "gauge",
        "ml_drift_detected": "gauge",
        "exporter_collect_errors": "counter",
    }


class FakeCpuTimes:
    """psutil.cpu_times() of a machine whose CPU seconds the test advances by hand."""

    def __init__(self) -> None:
        """Start with every CPU time at zero."""
        real = psutil.cpu_times()
        self.now = real._replace(**dict.fromkeys(real._fields, 0.0))

    def __call__(self, percpu: bool = False):
        """Return the current times, as psutil.cpu_times does."""
        assert not percpu
        return self.now

    def advance(self, **seconds: float) -> None:
        """Add CPU seconds to some fields (user, idle, ...)."""
        self.now = self.now._replace(**{f: getattr(self.now, f) + s for f, s in seconds.items()})


def cpu_in_a_new_thread(registry: CollectorRegistry) -> float | None:
    """Scrape the CPU gauge from a thread of its own, as the HTTP server does per request."""
    result: list[float | None] = []
    thread = threading.Thread(
        target=lambda: result.append(registry.get_sample_value("system_cpu_usage_percent"))
    )
    thread.start()
    thread.join()
    return result[0]


@pytest.fixture
def cpu_times(monkeypatch) -> FakeCpuTimes:
    """Replace psutil's CPU times with ones the test moves, on 2 CPUs."""
    fake = FakeCpuTimes()
    monkeypatch.setattr(psutil, "cpu_times", fake)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 2)
    return fake


def test_cpu_is_measured_between_scrapes_on_different_threads(log, reference, cpu_times):
    registry = scrape(log, reference)
    list(registry.collect())  # the exporter's warm-up collection, right after start
    cpu_times.advance(user=3.0, idle=1.0)  # 2 seconds on 2 CPUs, 3 of the 4 busy
    assert cpu_in_a_new_thread(registry) == pytest.approx(75.0)
    cpu_times.advance(system=1.0, idle=2.0, iowait=0.5, steal=0.5)
    assert cpu_in_a_new_thread(registry) == pytest.approx(25.0)


def test_a_reading_right_after_another_keeps_the_longer_interval(log, reference, cpu_times):
    registry = scrape(log, reference)
    cpu_times.advance(user=0.1)  # a warm-up 50 ms after start: too short to restart from
    assert cpu_in_a_new_thread(registry) == pytest.approx(100.0)
    cpu_times.advance(user=1.9, idle=2.0)
    assert cpu_in_a_new_thread(registry) == pytest.approx(50.0)  # 2 busy of 4, since start


def test_guest_time_is_not_counted_twice(log, reference, cpu_times):
    if "guest" not in cpu_times.now._fields:
        pytest.skip("psutil reports no guest time on this platform")
    registry = scrape(log, reference)
    cpu_times.advance(user=2.0, guest=2.0, idle=2.0)  # guest time is part of user time
    assert cpu_in_a_new_thread(registry) == pytest.approx(50.0)
