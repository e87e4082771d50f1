"""The OpenAPI 3.1 document of the API, built from the pydantic models that validate it."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from penguins.serving.schemas import (
    BatchPrediction,
    BatchRequest,
    ErrorBody,
    FeedbackRequest,
    FeedbackResult,
    Health,
    ModelInfo,
    Prediction,
    Sample,
    ServiceInfo,
)

REF = "#/components/schemas/{model}"
_REQUESTS = (Sample, BatchRequest, FeedbackRequest)
_ANSWERS = (Prediction, BatchPrediction, FeedbackResult, Health, ModelInfo, ServiceInfo, ErrorBody)


def _ref(model: type[BaseModel]) -> dict:
    """Return a JSON reference to a component schema."""
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict:
    """Return a response (or request body) object carrying one JSON model."""
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, dict]:
    """Return the error responses of a route, each with the common error body."""
    meaning = {
        400: "body is not valid JSON",
        404: "unknown prediction_id",
        413: "too many samples, or body over the size limit",
        415: "Content-Type is not application/json",
        422: "a field is missing, of the wrong type, out of range or unexpected",
        503: "no model loaded yet",
    }
    return {str(s): _json(ErrorBody, meaning[s]) for s in statuses}


def _post(summary: str, body: type[BaseModel], answer: type[BaseModel], *errors: int) -> dict:
    """Return the operation object of a JSON POST route."""
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, **_json(body, body.__doc__ or "")},
            "responses": {"200": _json(answer, answer.__doc__ or ""), **_errors(*errors)},
        }
    }


def build_openapi(max_batch_size: int, max_body_bytes: int) -> dict:
    """Return the OpenAPI document, with this server's batch and body limits filled in."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _REQUESTS] + [(m, "serialization") for m in _ANSWERS],
        ref_template=REF,
    )
    schemas = defs["$defs"]
    schemas["BatchRequest"]["properties"]["samples"]["maxItems"] = max_batch_size
    limits = f"At most {max_batch_size} samples per batch and {max_body_bytes} bytes per body."
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Palmer Penguins species classifier",
            "version": "1.0.0",
            "description": "Predicts a penguin's species from its measurements. " + limits,
        },
        "paths": _paths(),
        "components": {"schemas": schemas},
    }


def _paths() -> dict:
    """Return the operations of every route."""
    text = {"description": "Prometheus text format", "content": {"text/plain": {}}}
    return {
        "/": {
            "get": {
                "summary": "The service, the served model version and the routes",
                "responses": {"200": _json(ServiceInfo, "what this service is")},
            }
        },
        "/health": {
            "get": {
                "summary": "Whether the server has a model to predict with",
                "responses": {
                    "200": _json(Health, "a model is loaded"),
                    "503": _json(Health, "no model loaded: the reason says why"),
                },
            }
        },
        "/predict": _post(
            "Predict the species of one penguin", Sample, Prediction, 400, 413, 415, 422, 503
        ),
        "/predict/batch": _post(
            "Predict the species of several penguins, in order",
            BatchRequest,
            BatchPrediction,
            *(400, 413, 415, 422, 503),
        ),
        "/feedback": _post(
            "Attach the actual species to a prediction",
            FeedbackRequest,
            FeedbackResult,
            *(400, 404, 413, 415, 422),
        ),
        "/model/info": {
            "get": {
                "summary": "The served model: registry version, algorithm, test metrics",
                "responses": {"200": _json(ModelInfo, "the served model"), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of all worker processes",
                "responses": {"200": text},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {}},
                    }
                },
            }
        },
    }
