"""The API in this process following a real MLflow store: what it says about the version."""

from __future__ import annotations

import uuid

import pytest

from penguins.features import FEATURES, SPECIES
from penguins.serving.schemas import Health, ModelInfo
from tests.support.samples import SAMPLE


def test_health_and_model_info_describe_the_served_model(client, trained_store):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json == {"status": "healthy", "model_loaded": True, "model_version": "1"}
    info = client.get("/model/info")
    assert info.status_code == 200
    body = ModelInfo.model_validate(info.json)
    assert (body.name, body.version, body.alias) == ("penguins-classifier", "1", "champion")
    assert body.algorithm in {"logistic_regression", "svm", "random_forest"}
    assert body.run_id
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro"} <= set(body.metrics)
    assert body.features == list(FEATURES)
    assert body.classes == list(SPECIES)
    assert body.uri == trained_store.model_uri
    assert info.json["loaded_at"].endswith("Z")


def test_a_fixed_model_uri_is_served(make_app):
    client = make_app(model_uri="models:/penguins-classifier/1").test_client()
    info = client.get("/model/info").json
    assert info["alias"] is None
    assert info["uri"] == "models:/penguins-classifier/1"
    assert client.post("/predict", json=SAMPLE).json["model_version"] == "1"


def test_without_a_model_the_api_answers_503_but_takes_feedback_routes(make_app, empty_store):
    client = make_app(tracking_uri=empty_store).test_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert Health.model_validate(health.json).status == "unhealthy"
    assert health.json["model_loaded"] is False
    for method, path, body in [
        ("post", "/predict", SAMPLE),
        ("post", "/predict/batch", {"samples": [SAMPLE]}),
        ("get", "/model/info", None),
    ]:
        resp = getattr(client, method)(path, json=body)
        assert resp.status_code == 503, path
        assert "no model" in resp.json["error"]
    unknown = {"prediction_id": str(uuid.uuid4()), "actual_species": "Adelie"}
    assert client.post("/feedback", json=unknown).status_code == 404


def test_series_exist_from_the_start(app, registry):
    for endpoint in ("/predict", "/predict/batch", "/feedback", "/health", "/metrics"):
        method = "GET" if endpoint in ("/health", "/metrics") else "POST"
        labels = {"method": method, "endpoint": endpoint, "status": "200"}
        assert registry.get_sample_value("ml_requests_total", labels) == 0
    version = app.extensions["penguins"].service.models.current.description
    for species in SPECIES:
        labels = {"model": version.algorithm, "version": "1", "species": species}
        assert registry.get_sample_value("ml_predictions_total", labels) == 0
    for result in ("success", "failed"):
        assert registry.get_sample_value("ml_model_reloads_total", {"result": result}) == 0


def test_model_gauges_describe_the_served_version(app, registry):
    d = app.extensions["penguins"].service.models.current.description
    info = {"model": d.algorithm, "version": "1", "run_id": d.run_id}
    assert registry.get_sample_value("ml_model_info", info) == 1
    accuracy = registry.get_sample_value(
        "ml_model_accuracy", {"model": d.algorithm, "version": "1"}
    )
    assert accuracy == pytest.approx(d.metrics["accuracy"])
