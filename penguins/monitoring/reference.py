"""The drift reference: the training data of the model that serves, found through MLflow.

``models:/NAME@ALIAS`` -> model version -> its run -> the run's artifact
``reference/training_data.csv`` (the training split: the six FEATURES plus species).
A new champion therefore brings its own reference. The alias is followed by the
registry's :class:`~penguins.registry.VersionWatcher`, the one watcher serving uses
too; references are cached per model version.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from penguins.config import ServiceSettings, redact
from penguins.features import FEATURES
from penguins.registry import (
    REFERENCE_ARTIFACT,
    ModelPointer,
    StoreError,
    Target,
    VersionWatcher,
    first_line,
)

# A model version's reference never changes, so a few cached versions are enough to
# switch back and forth between champions without downloading again.
CACHED_VERSIONS = 4
MIN_REFERENCE_ROWS = 30


class ReferenceDataError(RuntimeError):
    """The aliased version's run has no usable training data artifact."""


@dataclass(frozen=True)
class Reference:
    """The training data of one registered model version."""

    model_name: str
    version: str
    run_id: str
    data: pd.DataFrame


def read_reference_csv(path: str | Path) -> pd.DataFrame:
    """Read a training-data CSV, checking it holds the six FEATURES and enough rows."""
    data = pd.read_csv(path)
    missing = [f for f in FEATURES if f not in data.columns]
    if missing:
        raise ReferenceDataError(f"{REFERENCE_ARTIFACT} lacks columns: {', '.join(missing)}")
    data = data.dropna(subset=list(FEATURES))
    if len(data) < MIN_REFERENCE_ROWS:
        raise ReferenceDataError(
            f"{REFERENCE_ARTIFACT} has {len(data)} complete rows, need {MIN_REFERENCE_ROWS}"
        )
    return data.reset_index(drop=True)


def download_reference(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """Download and read the training data artifact of a run."""
    with tempfile.TemporaryDirectory(prefix="penguins-reference-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=REFERENCE_ARTIFACT,
                dst_path=tmp,
                tracking_uri=tracking_uri,
            )
        except (MlflowException, OSError) as exc:
            why = redact(first_line(exc), tracking_uri)
            raise ReferenceDataError(
                f"cannot download {REFERENCE_ARTIFACT} of run {run_id}: {why}"
            ) from None
        return read_reference_csv(path)


class ReferenceTracker:
    """Follow an alias and hold the reference of the version it points to.

    :meth:`current` is cheap: it asks MLflow only when ``refresh_seconds`` have passed
    since the last look-up, and downloads only versions it has not seen before.
    While there is no tracking store or no such alias it returns None (the watcher
    logs that once). Any other failure propagates from the look-up that met it, and
    the last good reference stays for later calls: a tracking store that is briefly
    unreachable does not change what drift is measured against.
    """

    def __init__(
        self,
        pointer: ModelPointer,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Follow ``pointer`` (``models:/NAME@ALIAS`` in a tracking store)."""
        self.pointer = pointer
        self._cache: dict[str, Reference] = {}
        self._lock = threading.Lock()
        self._missing = False
        # No back-off: a champion without a usable reference is tried again at every
        # look-up, so the error count shows it for as long as it lasts.
        self._watcher: VersionWatcher[Reference] = VersionWatcher(
            pointer, self._build, refresh_seconds, max_retry_seconds=0, clock=clock
        )

    @classmethod
    def of_settings(cls, settings: ServiceSettings) -> ReferenceTracker:
        """Follow the model and alias of a process's settings."""
        pointer = ModelPointer.of_alias(settings.tracking_uri, settings.model_name, settings.alias)
        return cls(pointer, settings.refresh_seconds)

    def current(self) -> Reference | None:
        """Return the reference of the aliased version, looking the alias up when due."""
        with self._lock:
            outcome = self._watcher.refresh_if_due()
            if outcome == "unreachable":  # the watcher's one line, not MLflow's many
                raise StoreError(self._watcher.problem) from self._watcher.error
            if outcome == "failed":
                raise self._shown(self._watcher.error)
            if outcome is not None:
                self._missing = outcome == "missing"
            return None if self._missing else self._watcher.current

    def _shown(self, exc: BaseException) -> BaseException:
        """Return the error to raise: ``exc``, or its text without the store's password.

        The collector logs what it catches; MLflow's errors quote the server's URL.
        """
        text = str(exc)
        shown = redact(text, self.pointer.tracking_uri)
        return exc if shown == text else StoreError(shown)

    def _build(self, target: Target) -> Reference:
        """Return the reference of a version, from the cache or downloaded from its run."""
        version, run_id = target.description.version, target.description.run_id
        if not run_id:
            raise ReferenceDataError(f"{self.pointer.uri} (v{version}) has no run")
        cached = self._cache.get(version)
        if cached is not None and cached.run_id == run_id:
            return cached
        data = download_reference(self.pointer.tracking_uri, run_id)
        reference = Reference(target.description.name, version, run_id, data)
        self._cache[version] = reference
        while len(self._cache) > CACHED_VERSIONS:
            self._cache.pop(next(iter(self._cache)))
        return reference
