"""The routes: each parses its request, calls the prediction service, renders the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app

from penguins.serving import answers, parsing

if TYPE_CHECKING:
    from penguins.serving.app import ApiContext

bp = Blueprint("api", __name__)


def _api() -> ApiContext:
    """Return what the current app serves with."""
    return current_app.extensions["penguins"]


@bp.get("/")
def index() -> Response:
    """Describe the service and list its routes."""
    service = _api().service
    return answers.service(service.models.current, _api().routes)


@bp.post("/predict")
def predict() -> Response:
    """Predict the species of one penguin."""
    rows = parsing.sample_rows(parsing.raw_body())
    return answers.prediction(_api().service.predict(rows))


@bp.post("/predict/batch")
def predict_batch() -> Response:
    """Predict the species of several penguins, in order."""
    api = _api()
    rows = parsing.batch_rows(parsing.raw_body(), api.settings.max_batch_size)
    return answers.batch(api.service.predict(rows, is_batch=True))


@bp.post("/feedback")
def feedback() -> Response:
    """Attach the actual species to an earlier prediction."""
    body = parsing.feedback_request(parsing.raw_body())
    found = _api().service.feedback(str(body.prediction_id), body.actual_species)
    return answers.feedback(body.prediction_id, found)


@bp.get("/health")
def health() -> Response:
    """Say whether the server can predict: a model loaded and the log writable."""
    service = _api().service
    return answers.health(service.models.current, service.problem())


@bp.get("/model/info")
def model_info() -> Response:
    """Describe the served model."""
    return answers.model_info(_api().service.model())


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the Prometheus metrics of every worker process."""
    body, content_type = _api().service.metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document."""
    return Response(_api().openapi, mimetype=answers.JSON)
