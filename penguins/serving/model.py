"""The model a server answers with: loading, smoke-testing, and the numpy fast path.

A :class:`ServedModel` is immutable: a new version is loaded into a new one beside
the current one, so a request finishes with the model it started with.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from penguins.config import DEFAULT_DATA_PATH, redact
from penguins.features import CATEGORICAL_FEATURES, FEATURES, SPECIES, TARGET, load_dataset
from penguins.registry import ModelDescription, Target, first_line
from penguins.serving.fastpath import FastPredictor, Unsupported, verify

log = logging.getLogger(__name__)

_DTYPES = {name: ("int64" if name in CATEGORICAL_FEATURES else "float64") for name in FEATURES}


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

    @classmethod
    def build(cls, pipeline: object, description: ModelDescription, uri: str) -> ServedModel:
        """Smoke-test a fitted pipeline and wrap it, with its numpy fast path where it matches."""
        if description.algorithm == "unknown":
            step = getattr(pipeline, "steps", [[None, pipeline]])[-1][1]
            description = dataclasses.replace(description, algorithm=type(step).__name__)
        order = smoke_test(pipeline, smoke_rows())
        fast = fast_predictor(pipeline)
        return cls(pipeline, description, uri, datetime.now(UTC), order, fast)

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


def download(target: Target, into: str) -> str:
    """Download a version's model folder from its store into a folder; return the local path.

    Through the target's own store, not MLflow's global one: a tracking server's
    ``mlflow-artifacts:/`` URIs are resolved against the server that gave them.
    """
    import mlflow.artifacts  # heavy; imported where first needed

    # MLflow draws a progress bar on every artifact download; in a server log it is noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.artifacts.download_artifacts(
        artifact_uri=target.download_uri,
        dst_path=into,
        tracking_uri=target.tracking_uri,
        registry_uri=target.tracking_uri,
    )


def load(target: Target, uri: str) -> ServedModel:
    """Load the version a model URI points at and smoke-test it; raise ModelLoadError if not fit.

    ``uri`` is the URI the server follows, shown by /model/info. The model is read
    into memory from a temporary copy, so nothing is left behind in any folder.
    """
    import mlflow.sklearn  # heavy; imported where first needed

    try:
        with tempfile.TemporaryDirectory(prefix="penguins-model-") as folder:
            pipeline = mlflow.sklearn.load_model(download(target, folder))
    except Exception as exc:  # MLflow raises many kinds: missing files, bad format, ...
        why = f"cannot load {target.download_uri}: {type(exc).__name__}: {first_line(exc)}"
        uris = [u for u in (target.tracking_uri, target.download_uri) if u]
        raise ModelLoadError(redact(why, *uris)) from exc
    return ServedModel.build(pipeline, target.description, uri)
