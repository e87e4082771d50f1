"""The prediction service every route shares: predict, log, count; take feedback.

Routes parse a request into model rows and render what this returns; only this module
runs the model, makes prediction ids, and hands each batch to the prediction log
(committed before the answer leaves) and to the metrics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from penguins.features import SPECIES
from penguins.predlog import Feedback, LogUnavailable, PredictionLog, Predictions
from penguins.serving.errors import ApiError
from penguins.serving.ids import new_ids
from penguins.serving.manager import ModelSource
from penguins.serving.metrics import ServingMetrics
from penguins.serving.model import ServedModel

# What a client should wait before trying again while the log cannot be written.
RETRY_AFTER_SECONDS = 5
PROBE_SECONDS = 1.0


@contextlib.contextmanager
def _log_outage() -> Iterator[None]:
    """Answer 503 with Retry-After while the log cannot be written: nothing was recorded."""
    try:
        yield
    except LogUnavailable as exc:
        raise ApiError(
            503,
            f"{exc}; nothing was recorded, try again later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc


@dataclass(frozen=True)
class PredictionResult:
    """What one request predicted, with what its answer shows beyond the log's record."""

    predictions: Predictions
    proba: np.ndarray  # one row per prediction, columns in SPECIES order
    best: np.ndarray  # the column of each prediction's species
    seconds: float  # time the model took for all rows


class PredictionService:
    """Answer predictions and feedback with the current model, the log and the metrics."""

    def __init__(self, models: ModelSource, log: PredictionLog, metrics: ServingMetrics) -> None:
        """Serve with ``models.current``, recording into ``log`` and counting in ``metrics``."""
        self.models = models
        self.log = log
        self.metrics = metrics
        self._probed_at: float | None = None
        self._log_problem: str | None = None

    def model(self) -> ServedModel:
        """Return the model to answer with, or raise 503 while none is loaded."""
        model = self.models.current
        if model is None:
            raise ApiError(503, "no model loaded: the model is not available yet")
        return model

    def predict(self, rows: Sequence[tuple], *, is_batch: bool = False) -> PredictionResult:
        """Predict rows, record them in the log (committed), count them; return the result."""
        model = self.model()
        started = time.perf_counter()
        proba = model.predict_proba(rows)
        seconds = time.perf_counter() - started
        best = proba.argmax(axis=1)
        batch = Predictions(
            ids=new_ids(len(rows)),
            created_at=time.time(),
            algorithm=model.algorithm,
            model_version=model.version,
            rows=rows,
            species=list(map(SPECIES.__getitem__, best.tolist())),
            confidences=proba[np.arange(len(best)), best].tolist(),
        )
        with _log_outage():  # committed before we answer: feedback works at once
            self.log.record_predictions(batch)
        self.metrics.observe_predictions(batch, is_batch=is_batch)
        return PredictionResult(batch, proba, best, seconds)

    def feedback(self, prediction_id: str, actual_species: str) -> Feedback:
        """Attach the actual species to a logged prediction; 404 for an unknown id."""
        with _log_outage():
            found = self.log.attach_feedback(prediction_id, actual_species)
        if found is None:
            raise ApiError.at_field(
                404,
                "unknown prediction_id",
                "prediction_id",
                f"no prediction with id {prediction_id}",
            )
        self.metrics.observe_feedback(found)
        return found

    def problem(self) -> str | None:
        """Return why this server cannot answer predictions now, or None when it can.

        The log is probed with a real write at most once per PROBE_SECONDS, so a server
        taken out of a balancer's rotation sees the log recover by itself.
        """
        if self.models.current is None:
            return self.models.reason or "no model loaded yet"
        now = time.monotonic()
        if self._probed_at is None or now - self._probed_at >= PROBE_SECONDS:
            self._probed_at, self._log_problem = now, self.log.probe()
        return self._log_problem

    def close(self) -> None:
        """Stop following the model and close the prediction log."""
        self.models.stop()
        self.log.close()
