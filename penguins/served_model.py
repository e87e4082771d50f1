"""The model a server answers with: loading, smoke-testing, and following the champion alias.

A :class:`ServedModel` is immutable. :class:`ModelManager` holds the current one in a
single attribute; a new version is loaded and smoke-tested beside it and swapped in
with one assignment, so a request that has read ``manager.current`` finishes with the
model it started with and no request sees half a swap.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from penguins.config import DEFAULT_DATA_PATH
from penguins.fastpath import FastPredictor, Unsupported, verify
from penguins.features import CATEGORICAL_FEATURES, FEATURES, SPECIES, TARGET, load_dataset
from penguins.metrics import ServingMetrics
from penguins.registry import (
    ALGORITHM_TAG,
    ModelDescription,
    connect,
    describe_version,
    get_alias_version,
)

log = logging.getLogger(__name__)

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")
_DTYPES = {name: ("int64" if name in CATEGORICAL_FEATURES else "float64") for name in FEATURES}
# A version that failed is tried again after this many refresh intervals, doubling
# with each failure up to MAX_RETRY_SECONDS: a broken version costs a log line and a
# counter now and then, not a load every few seconds.
MAX_RETRY_SECONDS = 600.0
# The version label of a model served from outside the registry (runs:/..., a path).
UNREGISTERED = "unregistered"


class ModelLoadError(RuntimeError):
    """A model version cannot be loaded or fails its smoke test."""


def to_frame(rows: Sequence[Sequence[float | int]]) -> pd.DataFrame:
    """Return model input rows as a DataFrame with the training column names and types."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(FEATURES)
    pairs = zip(FEATURES, columns, strict=True)
    return pd.DataFrame({name: np.asarray(col, dtype=_DTYPES[name]) for name, col in pairs})


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with what the API says about it; never changed once built."""

    pipeline: object
    description: ModelDescription
    uri: str
    loaded_at: datetime
    column_order: tuple[int, ...]  # predict_proba column of each of SPECIES
    fast: FastPredictor | None = None  # the numpy mirror, when it matched the pipeline

    @property
    def version(self) -> str:
        """Return the registry version."""
        return self.description.version

    @property
    def algorithm(self) -> str:
        """Return the algorithm name (the ``model`` label of the metrics)."""
        return self.description.algorithm

    def predict_proba(self, rows: Sequence[Sequence[float | int]]) -> np.ndarray:
        """Return one row of probabilities per input row, columns in SPECIES order."""
        if self.fast is not None:
            proba = self.fast.predict_proba(np.asarray(rows, dtype=float))
        else:
            proba = self.pipeline.predict_proba(to_frame(rows))
        return proba[:, self.column_order]


@functools.cache
def verification_rows(path: Path = DEFAULT_DATA_PATH) -> pd.DataFrame:
    """Return every row of the data set: what the fast path must answer like the pipeline."""
    return load_dataset(path)


def fast_predictor(pipeline: object) -> FastPredictor | None:
    """Build the numpy fast path and check it on the whole data set; None where it differs.

    The MLflow model stays the source of truth: a mirror that cannot be built, or
    that differs from the pipeline anywhere by more than the tolerance, is not used.
    """
    try:
        fast = FastPredictor(pipeline)
        worst = verify(fast, pipeline, verification_rows())
    except Unsupported as exc:
        log.warning("predicting through scikit-learn: no fast path (%s)", exc)
        return None
    log.info("fast path matches the pipeline on every data row (max difference %.2g)", worst)
    return fast


@functools.cache
def smoke_rows(path: Path = DEFAULT_DATA_PATH) -> tuple[tuple[float | int, ...], ...]:
    """Return the first row of each species in the data: the smoke test's inputs."""
    data = load_dataset(path)
    firsts = data.groupby(TARGET, sort=False).head(1)
    return tuple(tuple(row) for row in firsts[list(FEATURES)].itertuples(index=False))


def smoke_test(pipeline: object, rows: Sequence[Sequence[float | int]]) -> tuple[int, ...]:
    """Check a pipeline answers like a penguins classifier; return its SPECIES column order."""
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    if sorted(classes) != sorted(SPECIES):
        raise ModelLoadError(f"model classes are {classes}, expected {list(SPECIES)}")
    if not callable(getattr(pipeline, "predict_proba", None)):
        raise ModelLoadError("model has no predict_proba")
    try:
        proba = np.asarray(pipeline.predict_proba(to_frame(rows)), dtype=float)
    except Exception as exc:  # any failure to predict disqualifies the model
        raise ModelLoadError(f"model failed to predict: {type(exc).__name__}: {exc}") from exc
    if proba.shape != (len(rows), len(SPECIES)):
        raise ModelLoadError(f"predict_proba gave shape {proba.shape} for {len(rows)} rows")
    if not np.all(np.isfinite(proba)) or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
        raise ModelLoadError("predict_proba rows are not finite probabilities summing to 1")
    return tuple(classes.index(s) for s in SPECIES)


@dataclass(frozen=True)
class Target:
    """What a model URI points at now: a registry version, or a URI outside the registry."""

    version: str
    registered: ModelVersion | None = None


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from: an MLflow model URI and the tracking store behind it."""

    uri: str
    tracking_uri: str

    @property
    def alias(self) -> str | None:
        """Return the alias the URI follows (``models:/NAME@ALIAS``), or None for a fixed URI."""
        match = _REGISTRY_URI.match(self.uri)
        return match["alias"] if match else None

    def resolve(self, client: Callable[[], MlflowClient]) -> Target | None:
        """Return the version the URI points at now (one cheap query), or None if nothing.

        ``client`` is called only for registry URIs, to get a client of the store.
        """
        match = _REGISTRY_URI.match(self.uri)
        if match is None:  # runs:/..., a path: not in the registry, never moves
            return Target(UNREGISTERED)
        if match["alias"]:
            version = get_alias_version(client(), match["name"], match["alias"])
            return None if version is None else Target(str(version.version), version)
        version = client().get_model_version(match["name"], match["version"])
        return Target(str(version.version), version)

    def describe(
        self, client: Callable[[], MlflowClient], target: Target
    ) -> tuple[ModelDescription, str]:
        """Return what the API says about a target and the URI to load it from."""
        version = target.registered
        if version is None:
            return _unregistered(self.uri), self.uri
        store = client()
        try:
            description = describe_version(store, version, self.alias)
        except MlflowException as exc:  # e.g. its run was deleted: serve it all the same
            log.warning("no run details for %s v%s: %s", version.name, version.version, exc)
            description = ModelDescription(
                name=version.name,
                version=str(version.version),
                alias=self.alias,
                run_id=version.run_id,
                algorithm=version.tags.get(ALGORITHM_TAG, "unknown"),
                metrics={},
            )
        return description, store.get_model_version_download_uri(version.name, version.version)


def _unregistered(uri: str) -> ModelDescription:
    """Describe a model that is not in the registry."""
    return ModelDescription(
        name=uri, version=UNREGISTERED, alias=None, run_id=None, algorithm="unknown", metrics={}
    )


def load(source: ModelSource, description: ModelDescription, load_uri: str) -> ServedModel:
    """Load one model version and smoke-test it, raising ModelLoadError on any failure."""
    import mlflow.sklearn  # heavy; imported where first needed

    try:
        pipeline = mlflow.sklearn.load_model(load_uri)
    except Exception as exc:  # MLflow raises many kinds: missing files, bad format, ...
        raise ModelLoadError(f"cannot load {load_uri}: {type(exc).__name__}: {exc}") from exc
    if description.algorithm == "unknown":
        step = getattr(pipeline, "steps", [[None, pipeline]])[-1][1]
        description = dataclasses.replace(description, algorithm=type(step).__name__)
    order = smoke_test(pipeline, smoke_rows())
    fast = fast_predictor(pipeline)
    return ServedModel(pipeline, description, source.uri, datetime.now(UTC), order, fast)


class ModelManager:
    """Hold the served model and keep it in step with its source, one refresh at a time."""

    def __init__(
        self,
        source: ModelSource,
        metrics: ServingMetrics,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare to serve ``source``; nothing is loaded until :meth:`refresh`."""
        self.source = source
        self.metrics = metrics
        self.refresh_seconds = refresh_seconds
        self.current: ServedModel | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._started = False
        self._failures: dict[str, tuple[int, float]] = {}  # version -> (count, retry at)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: MlflowClient | None = None

    def _store(self) -> MlflowClient:
        """Return this process's client of the tracking store, connecting on first use."""
        if self._client is None:
            self._client = connect(self.source.tracking_uri)
        return self._client

    def refresh(self) -> str:
        """Serve what the source points at now; return what happened.

        One of ``unchanged``, ``missing`` (nothing to serve yet), ``swapped``,
        ``failed`` (kept the current model), ``waiting`` (a failed version not due
        for another try) or ``unreachable`` (the store did not answer).
        """
        with self._lock:
            attempt_counts, self._started = self._started, True
            try:
                target = self.source.resolve(self._store)
            except Exception as exc:  # store down or locked: keep serving, try next time
                self._client = None
                log.warning("cannot resolve %s: %s", self.source.uri, exc)
                return "unreachable"
            if target is None:
                return "missing"
            if self.current is not None and self.current.version == target.version:
                return "unchanged"
            return self._try_swap(target, attempt_counts)

    def _try_swap(self, target: Target, counted: bool) -> str:
        """Load a new version beside the current one and swap it in if it passes."""
        version = target.version
        failures, retry_at = self._failures.get(version, (0, 0.0))
        if failures and self._clock() < retry_at:
            return "waiting"
        try:
            description, load_uri = self.source.describe(self._store, target)
        except Exception as exc:  # the store failed between two queries: try next time
            self._client = None
            log.warning("cannot describe %s v%s: %s", self.source.uri, version, exc)
            return "unreachable"
        try:
            new = load(self.source, description, load_uri)
        except ModelLoadError as exc:
            delay = min(self.refresh_seconds * 2**failures, MAX_RETRY_SECONDS)
            self._failures[version] = (failures + 1, self._clock() + delay)
            if counted:
                self.metrics.reloads.labels("failed").inc()
            kept = f"v{self.current.version}" if self.current else "nothing"
            log.error("version %s not served (%s); still serving %s", version, exc, kept)
            return "failed"
        old, self.current = self.current, new
        self._failures.pop(version, None)
        self.metrics.model_served(new.description, old.description if old else None)
        if counted:
            self.metrics.reloads.labels("success").inc()
        previous = f"v{old.version}" if old else "nothing"
        log.info(
            "serving %s v%s (%s) from %s, was %s",
            new.description.name,
            version,
            new.algorithm,
            self.source.uri,
            previous,
        )
        return "swapped"

    def start(self) -> None:
        """Refresh every ``refresh_seconds`` in a background thread (after any fork)."""
        if self._thread is None and self.refresh_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="model-refresh", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Refresh until stopped; a fixed URI stops once it is served."""
        while not self._stop.wait(self.refresh_seconds):
            if self.current is not None and self.source.alias is None:
                return
            try:
                self.refresh()
            except Exception:  # never let the thread die: the next round may succeed
                log.exception("model refresh failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background refresh and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
