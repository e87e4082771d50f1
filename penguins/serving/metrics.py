"""The API's Prometheus metrics, defined once, exact across gunicorn worker processes.

Several workers need prometheus_client's multiprocess mode: each process writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` on any worker adds
them all up. ``ml_serving.py`` makes a fresh directory per server and sets the
variable before prometheus_client is imported (the library picks its value store at
import). Without the variable (tests, a single process) the metrics live in the
registry given to :class:`ServingMetrics`, where tests read them.

Model gauges use ``livemax``: one series per label set whatever the number of
workers, and a worker's values vanish when it exits. When a worker swaps models it
sets the old version's ``ml_model_info`` and ``ml_model_accuracy`` to 0, so a series
at 1 means "some worker serves this version now"; while workers switch over, both
versions show 1. Dashboards select the served version with ``ml_model_info == 1``.
"""

from __future__ import annotations

import glob
import os
from collections import Counter as Tally
from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from penguins.config import MULTIPROC_ENV
from penguins.features import SPECIES
from penguins.predlog import Feedback, Predictions
from penguins.registry import ModelDescription

# Requests take from a fraction of a millisecond (health, one row) to seconds (a full
# batch); the alerting threshold (0.5 s) and the usual SLO points are bucket edges.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# Confidence is the largest of three probabilities, so never below 1/3, and the models
# are confident: on rows of the data set with measurement noise (what inference.py
# sends), the SVM champion's confidences have p5 0.970, median 0.987 and max 0.996;
# logistic regression's p5 is 0.91, random forest's 0.82. One bucket from 0.95 to 0.99
# read the champion's p5 as 0.952. Steps of 0.02 from 0.9, 0.01 from 0.94 and 0.005 at
# the top keep the dashboard's p5 and median within 0.005 of the true values for all
# three models.
CONFIDENCE_BUCKETS = (
    0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 1.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

# Client-chosen methods would make unbounded label values; anything else is "other".
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
OTHER = "other"
OUTCOMES = ("correct", "incorrect")
RELOAD_RESULTS = ("success", "failed")


class WrittenFilesCollector:
    """All workers' metrics, from the metric files that have been written.

    A worker's file is empty for a moment after the worker creates it, and
    prometheus_client's collector fails reading it then (struct.error), which made
    /metrics answer 500 right after a worker restart. An empty file holds no
    values yet, so leaving it out loses nothing.
    """

    def __init__(self, path: str) -> None:
        """Read the metric files of the multiprocess directory ``path``."""
        self.path = path

    def collect(self):
        """Merge the non-empty metric files, as MultiProcessCollector does with all."""
        files = []
        for name in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(name) > 0:
                    files.append(name)
            except FileNotFoundError:  # a dead worker's gauge file, removed meanwhile
                continue
        return MultiProcessCollector.merge(files, accumulate=True)


def multiprocess_dir() -> str | None:
    """Return the multiprocess directory when multiprocess mode is on, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


def method_label(method: str) -> str:
    """Return a bounded label value for an HTTP method."""
    return method if method in KNOWN_METHODS else OTHER


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (counters and histograms keep their totals)."""
    path = multiprocess_dir()
    if path:
        mark_process_dead(pid, path)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """Add many observations to one histogram series: one write per bucket, not per value.

    prometheus_client has no bulk observe (its maintainers declined one), and in
    multiprocess mode each observe() writes the metric file, so a 10k-row batch paid
    10k writes. This adds to the series' bucket and sum values exactly as its
    observe() does, value by value: each amount lands in the first bucket whose upper
    bound is at least the amount. It relies on the client's internals
    (``_upper_bounds``, ``_buckets``, ``_sum``); a test compares it with observe() on
    the pinned client version, in both value modes, so an upgrade that changes them
    fails loudly.
    """
    if len(amounts) == 1:  # a one-row request: the client's own path is quicker
        histogram.observe(amounts[0])
        return
    values_ = np.asarray(amounts, dtype="float64")
    if not len(values_):
        return
    index = np.searchsorted(histogram._upper_bounds, values_, side="left")
    counts = np.bincount(index, minlength=len(histogram._upper_bounds))
    histogram._sum.inc(float(values_.sum()))
    for i in np.flatnonzero(counts[: len(histogram._upper_bounds)]):
        histogram._buckets[i].inc(int(counts[i]))


class ServingMetrics:
    """Every metric the API serves, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Define the metrics on ``registry`` (a fresh one by default)."""
        if multiprocess_dir() and values.ValueClass is values.MutexValue:
            raise RuntimeError(
                f"{MULTIPROC_ENV} was set after prometheus_client was imported; "
                "set it before importing anything that imports prometheus_client"
            )
        self.registry = registry if registry is not None else CollectorRegistry()
        self._define_request_metrics(self.registry)
        self._define_model_metrics(self.registry)
        self._define_quality_metrics(self.registry)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)

    def _define_request_metrics(self, reg: CollectorRegistry) -> None:
        """Define the HTTP metrics: requests by route and status, and their durations."""
        self.requests = Counter(
            "ml_requests_total",
            "HTTP requests answered, by route template and status.",
            ["method", "endpoint", "status"],
            registry=reg,
        )
        self.duration = Histogram(
            "ml_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

    def _define_model_metrics(self, reg: CollectorRegistry) -> None:
        """Define the model metrics: predictions, the served version, swaps."""
        self.predictions = Counter(
            "ml_predictions_total",
            "Predictions made (each batch row counts), by algorithm, version and species.",
            ["model", "version", "species"],
            registry=reg,
        )
        self.accuracy = Gauge(
            "ml_model_accuracy",
            "Test accuracy of a served model version; 0 once no worker serves it.",
            ["model", "version"],
            multiprocess_mode="livemax",
            registry=reg,
        )
        self.info = Gauge(
            "ml_model_info",
            "1 for a model version some worker serves; 0 once none does.",
            ["model", "version", "run_id"],
            multiprocess_mode="livemax",
            registry=reg,
        )
        self.reloads = Counter(
            "ml_model_reloads_total",
            "Model swap attempts after start-up, per worker.",
            ["result"],
            registry=reg,
        )

    def _define_quality_metrics(self, reg: CollectorRegistry) -> None:
        """Define what the answers look like: confidence, batch sizes, feedback."""
        self.confidence = Histogram(
            "ml_prediction_confidence",
            "Confidence (largest probability) of each prediction.",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "ml_batch_size",
            "Samples per /predict/batch request.",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.feedback = Counter(
            "ml_feedback_total",
            "Labelled predictions, each counted once by its first label, by model and version.",
            ["model", "version", "outcome"],
            registry=reg,
        )
        self.corrections = Counter(
            "ml_feedback_corrections_total",
            "Labels sent again for an already labelled prediction (they replace its label).",
            ["model", "version"],
            registry=reg,
        )

    def prepare_routes(self, routes: Iterable[tuple[str, str]]) -> None:
        """Create the request series of each (method, route template) so they start at 0."""
        for method, endpoint in routes:
            self.requests.labels(method, endpoint, "200")
            self.duration.labels(method, endpoint)

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        method = method_label(method)
        self.requests.labels(method, endpoint, str(status)).inc()
        self.duration.labels(method, endpoint).observe(seconds)

    def observe_predictions(self, batch: Predictions, *, is_batch: bool) -> None:
        """Count one request's predictions by species, their confidence and the batch size."""
        algorithm, version = batch.algorithm, batch.model_version
        for name, n in Tally(batch.species).items():
            self.predictions.labels(algorithm, version, name).inc(n)
        observe_many(self.confidence.labels(algorithm), batch.confidences)
        if is_batch:
            self.batch_size.observe(len(batch))

    def observe_feedback(self, feedback: Feedback) -> None:
        """Count a prediction's first label as correct or incorrect; later ones as corrections."""
        if feedback.first:
            outcome = "correct" if feedback.correct else "incorrect"
            self.feedback.labels(feedback.algorithm, feedback.model_version, outcome).inc()
        else:
            self.corrections.labels(feedback.algorithm, feedback.model_version).inc()

    def observe_reload(self, result: str) -> None:
        """Count one model swap attempt after start-up: ``success`` or ``failed``."""
        self.reloads.labels(result).inc()

    def model_served(self, new: ModelDescription, old: ModelDescription | None) -> None:
        """Describe the newly served version and retire the one it replaces."""
        if old is not None and (old.algorithm, old.version) != (new.algorithm, new.version):
            self.info.labels(old.algorithm, old.version, old.run_id or "").set(0)
            self.accuracy.labels(old.algorithm, old.version).set(0)
        self.info.labels(new.algorithm, new.version, new.run_id or "").set(1)
        if "accuracy" in new.metrics:
            self.accuracy.labels(new.algorithm, new.version).set(new.metrics["accuracy"])
        for species in SPECIES:
            self.predictions.labels(new.algorithm, new.version, species)
        for outcome in OUTCOMES:
            self.feedback.labels(new.algorithm, new.version, outcome)
        self.corrections.labels(new.algorithm, new.version)
        self.confidence.labels(new.algorithm)

    def render(self) -> tuple[bytes, str]:
        """Return the text exposition and its content type: all workers in multiprocess mode."""
        path = multiprocess_dir()
        if path:
            registry = CollectorRegistry()
            registry.register(WrittenFilesCollector(path))
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
