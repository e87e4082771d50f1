"""The Flask application factory: settings and ready-made parts in, the API out.

``create_app`` builds what it is not given: the model manager following the model
URI, the prediction log and the metrics. Tests pass their own (a tiny fitted
pipeline, a log in a temporary folder, a registry of their own).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import cached_property

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from penguins.config import from_env
from penguins.predlog import PredictionLog, open_log
from penguins.registry import ModelPointer
from penguins.serving import answers
from penguins.serving.dataplane import PredictionService
from penguins.serving.endpoints import bp
from penguins.serving.errors import ApiError
from penguins.serving.manager import ModelManager, ModelSource
from penguins.serving.metrics import OTHER, ServingMetrics
from penguins.serving.openapi import build_openapi
from penguins.serving.schemas import Route
from penguins.serving.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class ApiContext:
    """What the routes serve with: the prediction service and the settings."""

    service: PredictionService
    settings: ServingSettings
    routes: list[Route]

    @cached_property
    def openapi(self) -> bytes:
        """Return the OpenAPI document, built once."""
        s = self.settings
        return json.dumps(build_openapi(s.max_batch_size, s.body_limit)).encode()

    def close(self) -> None:
        """Stop following the model and close the prediction log."""
        self.service.close()


# Each worker prunes and checkpoints its log this often, off the request path.
LOG_UPKEEP_SECONDS = 0.5


def create_app(
    settings: ServingSettings | None = None,
    *,
    models: ModelSource | None = None,
    predlog: PredictionLog | None = None,
    metrics: ServingMetrics | None = None,
) -> Flask:
    """Build the API from settings (default: from the environment) and any ready-made parts."""
    settings = settings or from_env(ServingSettings)
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.body_limit
    metrics = metrics or ServingMetrics(CollectorRegistry())
    if models is None:
        pointer = ModelPointer(settings.served_uri, settings.tracking_uri)
        manager = ModelManager(pointer, metrics, settings.refresh_seconds)
        manager.refresh()
        models = manager
    predlog = predlog or open_log(
        settings.prediction_log_uri,
        max_rows=settings.prediction_log_max_rows,
        upkeep_seconds=LOG_UPKEEP_SECONDS,
    )
    service = PredictionService(models, predlog, metrics)
    app.register_blueprint(bp)
    _install_hooks(app)
    routes = _routes(app)
    app.extensions["penguins"] = ApiContext(service, settings, routes)
    metrics.prepare_routes((r.method, r.path) for r in routes)
    models.start()
    return app


def _routes(app: Flask) -> list[Route]:
    """Return every route of the app with the first line of its view's docstring."""
    return [
        Route(method=method, path=rule.rule, summary=_summary(app.view_functions[rule.endpoint]))
        for rule in app.url_map.iter_rules()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]


def _summary(view: object) -> str:
    """Return the first line of a view's docstring."""
    return (getattr(view, "__doc__", None) or "").strip().splitlines()[0]


def _install_hooks(app: Flask) -> None:
    """Time and count every request; answer every error in the one JSON shape."""
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.register_error_handler(ApiError, answers.error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _start_timer() -> None:
    """Note when the request started."""
    g.started = time.perf_counter()


def _endpoint_label() -> str:
    """Return the route template of this request; a known path with a wrong method counts too."""
    if request.url_rule is not None:
        return request.url_rule.rule
    exc = request.routing_exception
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        adapter = current_app.url_map.bind_to_environ(request.environ)
        try:
            rule, _ = adapter.match(method=exc.valid_methods[0], return_rule=True)
            return rule.rule
        except HTTPException:
            pass
    return OTHER


def _count_request(response: Response) -> Response:
    """Count the answered request by route template, method and status."""
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    metrics = current_app.extensions["penguins"].service.metrics
    metrics.observe_request(request.method, _endpoint_label(), response.status_code, seconds)
    return response


def _http_error(exc: HTTPException) -> Response:
    """Answer routing and protocol errors (404, 405, 413 ...) in the one error shape."""
    if isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        message = f"body is larger than the limit of {limit} bytes"
    elif isinstance(exc, NotFound):
        routes = ", ".join(
            f"{r.method} {r.path}" for r in current_app.extensions["penguins"].routes
        )
        message = f"no route {request.path[:100]}; the routes are {routes} (see /openapi.json)"
    elif isinstance(exc, MethodNotAllowed):
        allowed = " or ".join(sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"}))
        message = f"{request.path[:100]} does not take {request.method[:20]}; it takes {allowed}"
    else:
        message = f"{exc.name}: {exc.description}" if exc.description else exc.name
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return answers.error(ApiError(exc.code or 500, message, headers=headers))


def _unexpected_error(exc: Exception) -> Response:
    """Answer a fault of the server itself with a JSON 500, and log it with its traceback."""
    if current_app.debug:
        raise exc  # let the Werkzeug debugger show it (only with FLASK_DEBUG=1)
    log.exception("unexpected error on %s %s", request.method, request.path)
    return answers.error(ApiError(500, "internal server error"))
