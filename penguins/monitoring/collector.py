"""What ``prometheus_exporter.py`` serves: system usage, live accuracy and input drift.

Everything is read when Prometheus scrapes (a custom Collector, no background loop).
Each source fails on its own: a psutil call, the prediction log or MLflow that
raises costs only its own metrics, is logged, and counts in
``exporter_collect_errors_total{source}``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from penguins.features import FEATURES
from penguins.monitoring.drift import DriftBaseline
from penguins.monitoring.reference import Reference
from penguins.monitoring.settings import MonitorSettings
from penguins.predlog import PredictionLog

logger = logging.getLogger(__name__)

ERROR_SOURCES = ("cpu", "memory", "disk", "prediction_log", "reference")


# CPU time in which no work was done for this machine, as node exporter's utilisation
# rule counts it, so the two lines of the System dashboard agree.
IDLE_CPU_FIELDS = ("idle", "iowait", "steal")
# Linux counts guest time inside user and nice as well: summing it would count it twice.
DOUBLE_COUNTED_CPU_FIELDS = ("guest", "guest_nice")
# A reading over less wall time than this keeps the older start, so a scrape right
# after another (or the warm-up collection at start) leaves the next one a real interval.
MIN_CPU_WINDOW_SECONDS = 0.25
# The kernel counts CPU time in ticks of 10 ms or less: a few waits always see one.
TICK_WAITS, TICK_WAIT_SECONDS = 10, 0.02


class CpuUsage:
    """System-wide CPU in use since the previous reading, whichever thread reads it.

    psutil.cpu_percent(interval=None) keeps its previous reading per thread, and the
    HTTP server answers each scrape on a new thread, which has none: it would measure
    an interval of almost nothing and report 0.0 under full load, however it was
    primed at start. One shared reading, taken at start, measures the real interval.
    """

    def __init__(self) -> None:
        """Take the first reading now."""
        self._lock = threading.Lock()
        self._cpus = psutil.cpu_count() or 1
        self._start = psutil.cpu_times()

    def percent(self) -> float | None:
        """Return CPU in use since the previous reading, 0-100; None if no CPU time passes."""
        with self._lock:
            # A reading within one clock tick of the start has no interval yet: wait for
            # one rather than report 0.0, which would claim an idle machine.
            for _ in range(TICK_WAITS):
                now = psutil.cpu_times()
                busy, total = busy_and_total(self._start, now)
                if total > 0:
                    break
                time.sleep(TICK_WAIT_SECONDS)
            else:
                return None
            if total / self._cpus >= MIN_CPU_WINDOW_SECONDS:
                self._start = now
        return 100.0 * busy / total


def busy_and_total(start: tuple, end: tuple) -> tuple[float, float]:
    """Return the busy and the total CPU seconds between two psutil.cpu_times() readings."""
    delta = {
        field: max(0.0, getattr(end, field) - getattr(start, field))
        for field in end._fields
        if field not in DOUBLE_COUNTED_CPU_FIELDS
    }
    total = sum(delta.values())
    return total - sum(delta.get(field, 0.0) for field in IDLE_CPU_FIELDS), total


class MonitoringCollector(Collector):
    """Yield the exporter's metric families, read fresh from psutil, the log and MLflow."""

    def __init__(
        self,
        log: PredictionLog,
        reference: Callable[[], Reference | None],
        settings: MonitorSettings | None = None,
    ) -> None:
        """Read predictions from ``log``; ``reference()`` returns the drift reference or None."""
        self.log = log
        self.reference = reference
        self.settings = settings or MonitorSettings()
        self.errors: Counter[str] = Counter({source: 0 for source in ERROR_SOURCES})
        self._failing: dict[str, str] = {}
        self._lock = threading.Lock()
        self._baseline: tuple[tuple[str, str], DriftBaseline] | None = None
        # Started here, so the first scrape already measures the time since start.
        self.cpu = CpuUsage()

    def describe(self) -> list[Metric]:
        """Return nothing, so registering the collector does not run a collection."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family, each source guarded on its own."""
        yield from self._system()
        yield from self._live_accuracy()
        yield from self._drift()
        errors = CounterMetricFamily(
            "exporter_collect_errors",
            "Failures reading a metric source since the exporter started",
            labels=["source"],
        )
        with self._lock:
            for source in ERROR_SOURCES:
                errors.add_metric([source], self.errors[source])
        yield errors

    def _read(self, source: str, read: Callable[[], object]) -> object | None:
        """Return ``read()``, or count, log and return None when it raises."""
        try:
            value = read()
        except Exception as exc:
            with self._lock:
                self.errors[source] += 1
                repeated = self._failing.get(source) == repr(exc)
                self._failing[source] = repr(exc)
            # One line when a source starts failing (or fails differently), not one per scrape.
            if not repeated:
                logger.error("cannot read %s: %r", source, exc)
            return None
        with self._lock:
            recovered = self._failing.pop(source, None) is not None
        if recovered:
            logger.info("%s readable again", source)
        return value

    def _system(self) -> Iterator[Metric]:
        """Yield CPU, memory and disk usage in percent."""
        reads = (
            ("cpu", "system_cpu_usage_percent", "CPU in use since the previous scrape, 0-100",
             self.cpu.percent),
            ("memory", "system_memory_usage_percent", "Memory in use, 0-100",
             lambda: psutil.virtual_memory().percent),
            ("disk", "system_disk_usage_percent",
             f"Disk space in use on the file system of {self.settings.disk_path}, 0-100",
             lambda: psutil.disk_usage(self.settings.disk_path).percent),
        )  # fmt: skip
        for source, name, documentation, read in reads:
            value = self._read(source, read)
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=float(value))

    def _live_accuracy(self) -> Iterator[Metric]:
        """Yield accuracy and label count per model version over the newest labels."""
        rows = self._read(
            "prediction_log", lambda: self.log.recent_labelled(self.settings.accuracy_window)
        )
        if rows is None:
            return
        total: Counter[tuple[str, str]] = Counter()
        correct: Counter[tuple[str, str]] = Counter()
        for model, version, predicted, actual in rows:
            total[(model, version)] += 1
            correct[(model, version)] += predicted == actual
        accuracy = GaugeMetricFamily(
            "ml_model_live_accuracy",
            f"Share of correct predictions among the newest {self.settings.accuracy_window} "
            f"labelled ones (absent below {self.settings.accuracy_min_labels} labels)",
            labels=["model", "version"],
        )
        labels = GaugeMetricFamily(
            "ml_model_live_accuracy_labels",
            "Labelled predictions behind ml_model_live_accuracy",
            labels=["model", "version"],
        )
        for key, count in sorted(total.items()):
            labels.add_metric(list(key), count)
            if count >= self.settings.accuracy_min_labels:
                accuracy.add_metric(list(key), correct[key] / count)
        yield accuracy
        yield labels

    def _drift(self) -> Iterator[Metric]:
        """Yield the reference, the inputs counted, PSI per feature and whether any drifts."""
        reference = self._read("reference", self.reference)
        rows = self._read(
            "prediction_log", lambda: self.log.recent_inputs(self.settings.drift_window)
        )
        if reference is not None:
            info = GaugeMetricFamily(
                "ml_drift_reference_info",
                "The registered model version whose training data drift is measured against",
                labels=["version", "run_id"],
            )
            info.add_metric([reference.version, reference.run_id], 1)
            yield info
        if rows is None:
            return
        yield GaugeMetricFamily(
            "ml_drift_samples", "Recent inputs the drift metrics are computed over", value=len(rows)
        )
        if reference is not None and len(rows) >= self.settings.drift_min_samples:
            baseline = self._read("reference", lambda: self._baseline_of(reference))
            if baseline is not None:
                yield from self._psi(baseline.psi(np.asarray(rows, dtype="float64")))

    def _psi(self, scores: dict[str, float]) -> Iterator[Metric]:
        """Yield the PSI of each feature and whether any passes the threshold."""
        psi = GaugeMetricFamily(
            "ml_feature_drift_psi",
            f"Population stability index of the newest {self.settings.drift_window} inputs "
            "against the serving model's training data (0.1 watch, 0.2 drift)",
            labels=["feature"],
        )
        for name in FEATURES:
            psi.add_metric([name], scores[name])
        yield psi
        detected = any(value > self.settings.drift_threshold for value in scores.values())
        yield GaugeMetricFamily(
            "ml_drift_detected",
            f"1 while any feature's PSI is above {self.settings.drift_threshold}",
            value=int(detected),
        )

    def _baseline_of(self, reference: Reference) -> DriftBaseline:
        """Return the bins of a reference, built once per model version."""
        key = (reference.version, reference.run_id)
        with self._lock:
            if self._baseline is None or self._baseline[0] != key:
                self._baseline = (key, DriftBaseline(reference.data, self.settings.drift_bins))
            return self._baseline[1]
