"""Answers as JSON text, rendered in one place, in the shapes of the response models.

Predictions are formatted straight from the probabilities: it costs less time and far
less memory than a dict per row serialised afterwards (a worker's heap no longer keeps
tens of megabytes after a full batch). Tests check the text against
:class:`~penguins.serving.schemas.Prediction` and ``BatchPrediction``.
"""

from __future__ import annotations

import json
from itertools import repeat
from uuid import UUID

import numpy as np
import orjson
from flask import Response
from pydantic import BaseModel

from penguins.config import redact_uri
from penguins.features import FEATURES, SPECIES
from penguins.predlog import Feedback
from penguins.serving.dataplane import PredictionResult
from penguins.serving.errors import ApiError
from penguins.serving.model import ServedModel
from penguins.serving.schemas import FeedbackResult, Health, ModelInfo, Route, ServiceInfo

SERVICE = "penguins species classifier"

JSON = "application/json"

_PREDICTION = (
    '{"predicted_species":"%s","confidence":%s,'
    f'"probabilities":{{"{SPECIES[0]}":%s,"{SPECIES[1]}":%s,"{SPECIES[2]}":%s}},'
    '"prediction_time":%s,"model_version":%s,"prediction_id":"%s"}'
)
_FIELDS = 8  # the %s of one prediction


def predictions_json(result: PredictionResult) -> str:
    """Return the JSON text of the predictions, each shaped as ``Prediction``, comma-joined.

    The whole text is formatted in one go: the fields of every prediction are laid out
    in one list by slice assignment (in C), and one ``%`` fills a template repeated
    once per prediction. Probabilities are finite: checked when a model is loaded, and
    the log's NOT NULL column refuses a NaN confidence before any answer is written.
    """
    batch, n = result.predictions, len(result.predictions)
    # orjson writes every probability as JSON at once (formatting 30k floats one by one
    # in Python took longer than the model); the answer then only pastes text.
    numbers = orjson.dumps(result.proba.ravel().tolist())[1:-1].decode().split(",")
    chosen = (np.arange(0, 3 * n, 3) + np.asarray(result.best)).tolist()
    fields: list[str] = [""] * (_FIELDS * n)
    fields[0::_FIELDS] = batch.species
    fields[1::_FIELDS] = map(numbers.__getitem__, chosen)
    for column in range(3):
        fields[2 + column :: _FIELDS] = numbers[column::3]
    fields[5::_FIELDS] = repeat(orjson.dumps(result.seconds).decode(), n)
    fields[6::_FIELDS] = repeat(json.dumps(batch.model_version), n)
    fields[7::_FIELDS] = batch.ids
    return ",".join(repeat(_PREDICTION, n)) % tuple(fields)


def prediction(result: PredictionResult) -> Response:
    """Answer a /predict request."""
    return Response(predictions_json(result), mimetype=JSON)


def batch(result: PredictionResult) -> Response:
    """Answer a /predict/batch request, shaped as ``BatchPrediction``."""
    version = json.dumps(result.predictions.model_version)
    text = (
        f'{{"predictions":[{predictions_json(result)}],"count":{len(result.predictions)},'
        f'"prediction_time":{result.seconds!r},"model_version":{version}}}'
    )
    return Response(text, mimetype=JSON)


def model(body: BaseModel, status: int = 200) -> Response:
    """Answer with a response model serialised as JSON."""
    return Response(body.model_dump_json(), status=status, mimetype=JSON)


def error(exc: ApiError) -> Response:
    """Answer an error in the one error shape."""
    return Response(exc.to_json(), status=exc.status, mimetype=JSON, headers=dict(exc.headers))


def health(served: ServedModel | None, problem: str | None) -> Response:
    """Answer /health: 200 while the server can predict, 503 with the reason while not."""
    version = None if served is None else served.version
    if problem is not None:
        unhealthy = Health(
            status="unhealthy",
            model_loaded=served is not None,
            model_version=version,
            reason=problem,
        )
        return model(unhealthy, 503)
    healthy = Health(status="healthy", model_loaded=True, model_version=version)
    return Response(healthy.model_dump_json(exclude={"reason"}), mimetype=JSON)


def service(served: ServedModel | None, routes: list[Route]) -> Response:
    """Answer ``GET /``: the service, the served version and the routes."""
    version = None if served is None else served.version
    info = ServiceInfo(
        service=SERVICE, model_version=version, routes=routes, openapi="/openapi.json"
    )
    return model(info)


def model_info(served: ServedModel) -> Response:
    """Answer /model/info: the served model's registry entry, algorithm and test metrics."""
    d = served.description
    return model(
        ModelInfo(
            name=d.name,
            version=d.version,
            alias=d.alias,
            run_id=d.run_id,
            algorithm=d.algorithm,
            metrics=d.metrics,
            features=list(FEATURES),
            classes=list(SPECIES),
            loaded_at=served.loaded_at,
            uri=redact_uri(served.uri),  # MODEL_URI may be any URI, a password in it too
        )
    )


def feedback(prediction_id: UUID, found: Feedback) -> Response:
    """Answer /feedback: whether the labelled prediction was right."""
    return model(FeedbackResult(prediction_id=prediction_id, correct=found.correct))
