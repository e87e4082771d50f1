"""The prediction API: a Flask application factory, its routes and its error answers."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import orjson
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from penguins.config import (
    DEFAULT_MODEL_ALIAS,
    DEFAULT_MODEL_NAME,
    default_prediction_log_uri,
    default_tracking_uri,
    env_float,
    env_int,
    env_str,
)
from penguins.errors import ApiError, FieldError
from penguins.features import FEATURES, SPECIES
from penguins.metrics import OTHER, ServingMetrics
from penguins.openapi import build_openapi
from penguins.predlog import DEFAULT_MAX_ROWS, PredictionLog
from penguins.schemas import (
    BatchRequest,
    FeedbackRequest,
    FeedbackResult,
    Health,
    ModelInfo,
    Sample,
    fast_rows,
    validation_details,
)
from penguins.served_model import ModelManager, ModelSource, ServedModel

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 10_000
DEFAULT_REFRESH_SECONDS = 30.0
# A sample written out in full is about 150 bytes; 1 KiB each leaves room for
# pretty-printing and long decimals, so a full batch always fits.
BODY_BYTES_PER_SAMPLE = 1024
MIN_BODY_BYTES = 64 * 1024

# Python refuses to convert longer digit strings (a guard against slow conversions).
MAX_INT_DIGITS = 4300

M = TypeVar("M", bound=BaseModel)
bp = Blueprint("api", __name__)


def default_config() -> dict[str, Any]:
    """Return the settings' defaults, then the environment's values over them."""
    return {
        "MLFLOW_TRACKING_URI": default_tracking_uri(),
        "MODEL_NAME": env_str("MODEL_NAME", DEFAULT_MODEL_NAME),
        "MODEL_ALIAS": env_str("MODEL_ALIAS", DEFAULT_MODEL_ALIAS),
        "MODEL_URI": env_str("MODEL_URI", ""),
        "PREDICTION_LOG_URI": default_prediction_log_uri(),
        "PREDICTION_LOG_MAX_ROWS": env_int("PREDICTION_LOG_MAX_ROWS", DEFAULT_MAX_ROWS),
        "MODEL_REFRESH_SECONDS": env_float("MODEL_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS),
        "MAX_BATCH_SIZE": env_int("MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE),
        "MAX_BODY_BYTES": env_int("MAX_BODY_BYTES", 0),  # 0: derived from MAX_BATCH_SIZE
        "METRICS_REGISTRY": None,  # tests pass a CollectorRegistry of their own
    }


def body_limit(max_batch_size: int, max_body_bytes: int = 0) -> int:
    """Return the request body limit in bytes: the setting, or enough for a full batch."""
    return max_body_bytes or max(MIN_BODY_BYTES, max_batch_size * BODY_BYTES_PER_SAMPLE)


@dataclass
class ServingState:
    """What the routes share: the model manager, the prediction log and the metrics."""

    manager: ModelManager
    predlog: PredictionLog
    metrics: ServingMetrics
    max_batch_size: int
    max_body_bytes: int

    @cached_property
    def openapi(self) -> bytes:
        """Return the OpenAPI document, built once."""
        return json.dumps(build_openapi(self.max_batch_size, self.max_body_bytes)).encode()

    def close(self) -> None:
        """Stop refreshing the model and close the prediction log."""
        self.manager.stop()
        self.predlog.close()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the API: defaults, then the environment, then ``config`` (what tests pass)."""
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(default_config())
    if config:
        app.config.from_mapping(config)
    cfg = app.config
    cfg["MAX_CONTENT_LENGTH"] = body_limit(cfg["MAX_BATCH_SIZE"], cfg["MAX_BODY_BYTES"])
    model_uri = cfg["MODEL_URI"] or f"models:/{cfg['MODEL_NAME']}@{cfg['MODEL_ALIAS']}"
    metrics = ServingMetrics(cfg["METRICS_REGISTRY"] or CollectorRegistry())
    manager = ModelManager(
        ModelSource(model_uri, cfg["MLFLOW_TRACKING_URI"]), metrics, cfg["MODEL_REFRESH_SECONDS"]
    )
    state = ServingState(
        manager=manager,
        predlog=PredictionLog(cfg["PREDICTION_LOG_URI"], max_rows=cfg["PREDICTION_LOG_MAX_ROWS"]),
        metrics=metrics,
        max_batch_size=cfg["MAX_BATCH_SIZE"],
        max_body_bytes=cfg["MAX_CONTENT_LENGTH"],
    )
    app.extensions["penguins"] = state
    app.register_blueprint(bp)
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    metrics.prepare_routes(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    )
    if manager.refresh() == "missing":
        log.warning("no model at %s yet; answering 503 until one appears", model_uri)
    manager.start()
    return app


def _state() -> ServingState:
    """Return the current app's serving state."""
    return current_app.extensions["penguins"]


def _json_response(model: BaseModel, status: int = 200) -> Response:
    """Answer with a pydantic model serialised as JSON."""
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


# ---- request parsing -------------------------------------------------------------


def _json_body() -> Any:
    """Return the parsed JSON body, or raise the 415, 413 or 400 it deserves."""
    return _loads(_raw_body())


def _raw_body() -> bytes:
    """Return the body of a JSON request, or raise the 415 or 413 it deserves."""
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    return request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH


def _loads(raw: bytes) -> Any:
    """Parse a JSON body with the standard library, or raise 400: the reference parser."""
    try:
        # NaN and Infinity literals parse to floats and are then refused as non-finite
        # (422 naming the field); numbers too large for a float parse to inf, likewise.
        return json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ApiError(400, f"body is not valid JSON: {reason}") from None


def _loads_fast(raw: bytes) -> Any:
    """Parse a JSON body with orjson (several times faster); None where it refuses it.

    orjson is stricter than the standard library (no NaN, no BOM, no lone surrogates,
    UTF-8 only) and turns integers beyond 64 bits into floats; so its result serves
    only samples that pass :func:`fast_rows`, and everything else is parsed again by
    :func:`_loads`, whose answers (400, or values validated into a 422) are the API's.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _parse_int(text: str) -> int | float:
    """Parse a JSON integer; one too long for Python to convert counts as infinite (422)."""
    return int(text) if len(text) <= MAX_INT_DIGITS else math.inf


def _validate(model: type[M], data: Any) -> M:
    """Validate data against a request model, raising 422 with the fields at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid request", validation_details(exc)) from None


def _served() -> ServedModel:
    """Return the model to answer with, or raise 503 while none is loaded."""
    model = _state().manager.current
    if model is None:
        raise ApiError(503, "no model loaded: the model is not available yet")
    return model


# ---- predictions -----------------------------------------------------------------


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where each of the 32 hex digits goes in the 36 characters of a canonical UUID.
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _new_ids(n: int) -> list[str]:
    """Return ``n`` random UUID4s as canonical strings, as ``str(uuid4())`` but in bulk."""
    raw = np.frombuffer(bytearray(os.urandom(16 * n)), dtype=np.uint8).reshape(n, 16)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 0x0F
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_DIGITS] = _HEX[nibbles]
    joined = text.tobytes().decode("ascii")
    return [joined[i : i + 36] for i in range(0, 36 * n, 36)]


# One prediction as JSON text, shaped as :class:`Prediction`. Formatting text straight
# from the probabilities costs less time and far less memory than a dict per row
# serialised afterwards: a worker's heap no longer keeps tens of megabytes after a full
# batch. Probabilities are finite (checked when a model is loaded, and the log's NOT
# NULL column refuses a NaN confidence before any answer is written, as it did before).
_PREDICTION_JSON = (
    '{"predicted_species":"%s","confidence":%s,'
    f'"probabilities":{{"{SPECIES[0]}":%s,"{SPECIES[1]}":%s,"{SPECIES[2]}":%s}},'
    '"prediction_time":%s,"model_version":%s,"prediction_id":"%s"}'
)


def _predict(model: ServedModel, rows: Sequence[tuple]) -> tuple[list[str], float]:
    """Predict rows, record them in the log (committed), count them; return answers and time.

    Each answer is the JSON text of one :class:`Prediction`.
    """
    started = time.perf_counter()
    proba = model.predict_proba(rows)
    seconds = time.perf_counter() - started
    best = proba.argmax(axis=1).tolist()
    probs = proba.tolist()
    confidences = [p[i] for p, i in zip(probs, best, strict=True)]
    species = [SPECIES[i] for i in best]
    ids = _new_ids(len(rows))
    algorithm, version = model.algorithm, model.version
    now = time.time()
    state = _state()
    # committed before we answer: feedback works at once
    state.predlog.record_rows(
        (pid, now, algorithm, version, *row, name, confidence)
        for pid, row, name, confidence in zip(ids, rows, species, confidences, strict=True)
    )
    for name, n in Counter(species).items():
        state.metrics.predictions.labels(algorithm, version, name).inc(n)
    # prometheus_client has no public way to add many observations at once.
    observe = state.metrics.confidence.labels(algorithm).observe
    for confidence in confidences:
        observe(confidence)
    # orjson writes every probability as JSON at once (formatting 50k floats one by one
    # in Python took longer than the model); each answer then only pastes text.
    numbers = orjson.dumps(proba.ravel().tolist())[1:-1].decode().split(",")
    seconds_json, version_json = orjson.dumps(seconds).decode(), json.dumps(version)
    answers = [
        _PREDICTION_JSON
        % (
            name,
            numbers[j + i],
            numbers[j],
            numbers[j + 1],
            numbers[j + 2],
            seconds_json,
            version_json,
            pid,
        )  # fmt: skip
        for name, i, j, pid in zip(species, best, range(0, 3 * len(best), 3), ids, strict=True)
    ]
    return answers, seconds


def _json_text_answer(text: str) -> Response:
    """Answer 200 with JSON text already shaped as its response model."""
    return Response(text, mimetype="application/json")


@bp.post("/predict")
def predict() -> Response:
    """Predict the species of one penguin."""
    raw = _raw_body()
    rows = fast_rows([_loads_fast(raw)])
    if rows is None:  # not plainly valid: the models decide, and name the fields at fault
        rows = [_validate(Sample, _loads(raw)).row()]
    model = _served()
    answers, _ = _predict(model, rows)
    return _json_text_answer(answers[0])


@bp.post("/predict/batch")
def predict_batch() -> Response:
    """Predict the species of several penguins, in order."""
    raw = _raw_body()
    data = _loads_fast(raw)
    parsed_fast = data is not None
    if not parsed_fast:
        data = _loads(raw)
    limit = _state().max_batch_size
    samples = data.get("samples") if isinstance(data, dict) else None
    if isinstance(samples, list) and len(samples) > limit:
        raise ApiError(
            413,
            f"too many samples: {len(samples)} > {limit} (MAX_BATCH_SIZE)",
            [FieldError("samples", f"at most {limit} samples per request")],
        )
    rows = fast_rows(samples) if type(data) is dict and len(data) == 1 else None
    if rows is None:  # not plainly valid: the models decide, and name the fields at fault
        batch = _validate(BatchRequest, _loads(raw) if parsed_fast else data)
        rows = [s.row() for s in batch.samples]
        del batch
    del data, samples, raw  # free the parsed body before building the answer
    model = _served()
    answers, seconds = _predict(model, rows)
    _state().metrics.batch_size.observe(len(answers))
    # shaped as BatchPrediction
    return _json_text_answer(
        f'{{"predictions":[{",".join(answers)}],"count":{len(answers)},'
        f'"prediction_time":{seconds!r},"model_version":{json.dumps(model.version)}}}'
    )


@bp.post("/feedback")
def feedback() -> Response:
    """Attach the actual species to an earlier prediction."""
    body = _validate(FeedbackRequest, _json_body())
    state = _state()
    found = state.predlog.attach_feedback(str(body.prediction_id), body.actual_species)
    if found is None:
        raise ApiError(
            404,
            "unknown prediction_id",
            [FieldError("prediction_id", f"no prediction with id {body.prediction_id}")],
        )
    outcome = "correct" if found.correct else "incorrect"
    state.metrics.feedback.labels(found.model_name, found.model_version, outcome).inc()
    return _json_response(FeedbackResult(prediction_id=body.prediction_id, correct=found.correct))


# ---- about the service -----------------------------------------------------------


@bp.get("/health")
def health() -> Response:
    """Say whether a model is loaded: 200 if so, 503 if not."""
    model = _state().manager.current
    if model is None:
        return _json_response(
            Health(status="unhealthy", model_loaded=False, model_version=None), 503
        )
    return _json_response(Health(status="healthy", model_loaded=True, model_version=model.version))


@bp.get("/model/info")
def model_info() -> Response:
    """Describe the served model."""
    model = _served()
    d = model.description
    return _json_response(
        ModelInfo(
            name=d.name,
            version=d.version,
            alias=d.alias,
            run_id=d.run_id,
            algorithm=d.algorithm,
            metrics=d.metrics,
            features=list(FEATURES),
            classes=list(SPECIES),
            loaded_at=model.loaded_at,
            uri=model.uri,
        )
    )


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the Prometheus metrics of every worker process."""
    body, content_type = _state().metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document."""
    return Response(_state().openapi, mimetype="application/json")


# ---- request metrics and error answers -------------------------------------------


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
    _state().metrics.observe_request(
        request.method, _endpoint_label(), response.status_code, seconds
    )
    return response


def _error_response(status: int, body: dict, headers: Mapping[str, str] | None = None) -> Response:
    """Answer with an error body."""
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def _api_error(exc: ApiError) -> Response:
    """Answer an error raised where it was found."""
    return _error_response(exc.status, exc.to_dict())


def _http_error(exc: HTTPException) -> Response:
    """Answer routing and protocol errors (404, 405, 413 ...) in the same JSON shape."""
    if isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        message = f"body is larger than the limit of {limit} bytes"
    else:
        message = f"{exc.name}: {exc.description}" if exc.description else exc.name
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return _error_response(exc.code or 500, {"error": message}, headers)


def _unexpected_error(exc: Exception) -> Response:
    """Answer a fault of the server itself with a JSON 500, and log it with its traceback."""
    if current_app.debug:
        raise exc  # let the Werkzeug debugger show it (only with FLASK_DEBUG=1)
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error_response(500, {"error": "internal server error"})
