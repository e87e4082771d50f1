"""The drift reference: the training data of the model that serves, found through MLflow.

``models:/NAME@ALIAS`` -> model version -> its run -> the run's artifact
``reference/training_data.csv`` (the training split: the six FEATURES plus species).
A new champion therefore brings its own reference. References are cached per model
version, and the alias is looked up at most once every ``refresh_seconds``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from penguins.features import FEATURES
from penguins.registry import REFERENCE_ARTIFACT, get_alias_version

# A model version's reference never changes, so a few cached versions are enough to
# switch back and forth between champions without downloading again.
CACHED_VERSIONS = 4
MIN_REFERENCE_ROWS = 30

logger = logging.getLogger(__name__)


class ReferenceUnavailable(RuntimeError):
    """There is nothing to compare with yet: no tracking store, or no such model or alias."""


class ReferenceDataError(RuntimeError):
    """The aliased version's run has no usable training data artifact."""


@dataclass(frozen=True)
class Reference:
    """The training data of one registered model version."""

    model_name: str
    version: str
    run_id: str
    data: pd.DataFrame


def sqlite_store_missing(tracking_uri: str) -> Path | None:
    """Return the path of a ``sqlite:///`` tracking store that does not exist yet, else None.

    Asking MLflow about a missing SQLite store would create an empty one as a side effect.
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        path = Path(tracking_uri[len(prefix) :])
        if not path.exists():
            return path
    return None


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


def resolve_alias(tracking_uri: str, model_name: str, alias: str) -> tuple[str, str]:
    """Return (version, run_id) of ``models:/model_name@alias``."""
    missing = sqlite_store_missing(tracking_uri)
    if missing is not None:
        raise ReferenceUnavailable(f"no tracking store yet at {missing} (train a model first)")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = get_alias_version(client, model_name, alias)
    if version is None:
        raise ReferenceUnavailable(
            f"no model models:/{model_name}@{alias} in {tracking_uri} (train a model first)"
        )
    if not version.run_id:
        raise ReferenceDataError(f"models:/{model_name}@{alias} (v{version.version}) has no run")
    return str(version.version), version.run_id


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
            raise ReferenceDataError(
                f"cannot download {REFERENCE_ARTIFACT} of run {run_id}: {exc}"
            ) from None
        return read_reference_csv(path)


def load_reference(tracking_uri: str, model_name: str, alias: str) -> Reference:
    """Return the training data of the version ``models:/model_name@alias`` points to now."""
    version, run_id = resolve_alias(tracking_uri, model_name, alias)
    return Reference(model_name, version, run_id, download_reference(tracking_uri, run_id))


class ReferenceTracker:
    """Follow an alias and hold the reference of the version it points to.

    ``current()`` is cheap: it asks MLflow only when ``refresh_seconds`` have passed
    since the last look-up, and downloads only versions it has not seen before.
    While there is no tracking store or no such alias it returns None (and logs that
    once). Any other failure propagates from the look-up that met it, and the last
    good reference stays for later calls: a tracking store that is briefly
    unreachable does not change what serves.
    """

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        alias: str,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Follow ``models:/model_name@alias`` in the given tracking store."""
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._current: Reference | None = None
        self._cache: dict[str, Reference] = {}
        self._missing: str | None = None

    def current(self) -> Reference | None:
        """Return the reference of the aliased version, looking the alias up when due."""
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self.refresh_seconds:
                self._checked_at = now
                self._refresh()
            return self._current

    def _refresh(self) -> None:
        """Look the alias up and switch to (downloading if needed) the version it names."""
        try:
            version, run_id = resolve_alias(self.tracking_uri, self.model_name, self.alias)
        except ReferenceUnavailable as exc:
            if str(exc) != self._missing:
                logger.warning("no drift reference: %s", exc)
            self._missing, self._current = str(exc), None
            return
        self._missing = None
        reference = self._cache.get(version)
        if reference is None or reference.run_id != run_id:
            data = download_reference(self.tracking_uri, run_id)
            reference = Reference(self.model_name, version, run_id, data)
            self._remember(reference)
        if self._current is None or self._current.version != reference.version:
            logger.info(
                "drift reference: models:/%s@%s is version %s (run %s, %d training rows)",
                self.model_name,
                self.alias,
                reference.version,
                reference.run_id,
                len(reference.data),
            )
        self._current = reference

    def _remember(self, reference: Reference) -> None:
        """Cache a version's reference, forgetting the oldest beyond CACHED_VERSIONS."""
        self._cache[reference.version] = reference
        while len(self._cache) > CACHED_VERSIONS:
            self._cache.pop(next(iter(self._cache)))
