"""The prediction API in this process: routes, answers, the prediction log, settings."""

from __future__ import annotations

import math
import sqlite3
import uuid

import pytest

from penguins.config import from_env
from penguins.features import FEATURES, SPECIES
from penguins.serving.app import create_app
from penguins.serving.metrics import ServingMetrics
from penguins.serving.model import ServedModel
from penguins.serving.schemas import (
    BatchPrediction,
    FeedbackResult,
    Health,
    ModelInfo,
    Prediction,
    ServiceInfo,
)
from penguins.serving.settings import ServingSettings
from tests.support.predlog import logged_count, logged_row
from tests.support.samples import CHINSTRAP, GENTOO, SAMPLE, SAMPLE_BY_NAME
from tests.unit.serving.conftest import SERVED_ALGORITHM, FixedSource


def check_prediction(answer: dict, version: str = "1") -> Prediction:
    """Check one prediction's shape and arithmetic; return it parsed."""
    parsed = Prediction.model_validate(answer)
    probs = answer["probabilities"]
    assert list(probs) == list(SPECIES)
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    assert answer["confidence"] == max(probs.values())
    assert answer["predicted_species"] == max(probs, key=probs.get)
    assert 0 <= answer["prediction_time"] < 5
    assert answer["model_version"] == version
    assert uuid.UUID(answer["prediction_id"]).version == 7
    return parsed


@pytest.mark.parametrize("sample", [SAMPLE, SAMPLE_BY_NAME], ids=["codes", "names"])
def test_predict_answers_the_contract_shape(client, sample):
    resp = client.post("/predict", json=sample)
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    check_prediction(resp.json)
    assert resp.json["predicted_species"] == "Adelie"


def test_names_in_any_case_give_the_same_answer_as_codes(client):
    by_code = client.post("/predict", json=SAMPLE).json
    upper = {**SAMPLE_BY_NAME, "island": "TORGERSEN", "sex": "male"}
    by_name = client.post("/predict", json=upper).json
    assert by_name["probabilities"] == by_code["probabilities"]


def test_mixed_pairs_are_accepted(client):
    mixed = {**SAMPLE_BY_NAME, "sex_encoded": 1}
    del mixed["sex"]
    assert client.post("/predict", json=mixed).status_code == 200


def test_batch_answers_in_order(client):
    samples = [SAMPLE, GENTOO, CHINSTRAP, SAMPLE_BY_NAME]
    resp = client.post("/predict/batch", json={"samples": samples})
    assert resp.status_code == 200
    body = BatchPrediction.model_validate(resp.json)
    assert body.count == len(samples) == len(body.predictions)
    assert [p.predicted_species for p in body.predictions] == [
        "Adelie",
        "Gentoo",
        "Chinstrap",
        "Adelie",
    ]
    for answer in resp.json["predictions"]:
        check_prediction(answer)
    assert len({p.prediction_id for p in body.predictions}) == len(samples)
    assert body.model_version == "1"


def test_every_prediction_is_logged_before_the_answer(client, settings, served_model):
    log = settings.prediction_log_uri
    single = client.post("/predict", json=GENTOO).json
    batch = client.post("/predict/batch", json={"samples": [SAMPLE, CHINSTRAP]}).json
    assert logged_count(log) == 3
    row = logged_row(log, single["prediction_id"])
    assert row["algorithm"] == served_model.algorithm == SERVED_ALGORITHM
    assert row["model_version"] == "1"
    assert row["predicted_species"] == "Gentoo"
    assert row["confidence"] == single["confidence"]
    assert row["island_encoded"] == 1 and row["sex_encoded"] == 0  # names stored as codes
    assert [row[f] for f in FEATURES[:4]] == [GENTOO[f] for f in FEATURES[:4]]
    for answer in batch["predictions"]:
        assert logged_row(log, answer["prediction_id"]) is not None


@pytest.mark.parametrize(("actual", "correct"), [("Adelie", True), ("Gentoo", False)])
def test_feedback_says_whether_the_prediction_was_right(client, settings, actual, correct):
    pid = client.post("/predict", json=SAMPLE).json["prediction_id"]
    resp = client.post("/feedback", json={"prediction_id": pid, "actual_species": actual})
    assert resp.status_code == 200
    assert resp.json == {"prediction_id": pid, "correct": correct}
    FeedbackResult.model_validate(resp.json)
    assert logged_row(settings.prediction_log_uri, pid)["actual_species"] == actual


def test_feedback_accepts_an_id_in_upper_case(client):
    pid = client.post("/predict", json=SAMPLE).json["prediction_id"]
    body = {"prediction_id": pid.upper(), "actual_species": "Adelie"}
    assert client.post("/feedback", json=body).json == {"prediction_id": pid, "correct": True}


def test_feedback_on_an_unknown_prediction_is_404(client):
    body = {"prediction_id": str(uuid.uuid4()), "actual_species": "Adelie"}
    resp = client.post("/feedback", json=body)
    assert resp.status_code == 404
    assert resp.json["details"][0]["field"] == "prediction_id"


def test_health_and_model_info_describe_the_served_model(client, settings, description):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json == {"status": "healthy", "model_loaded": True, "model_version": "1"}
    info = client.get("/model/info")
    assert info.status_code == 200
    body = ModelInfo.model_validate(info.json)
    assert (body.name, body.version, body.alias) == ("penguins-classifier", "1", "champion")
    assert body.algorithm == SERVED_ALGORITHM
    assert body.run_id == description.run_id
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro"} <= set(body.metrics)
    assert body.metrics == pytest.approx(description.metrics)
    assert body.features == list(FEATURES)
    assert body.classes == list(SPECIES)
    assert body.uri == settings.served_uri
    assert info.json["loaded_at"].endswith("Z")


def test_the_root_describes_the_service_and_every_route(client, app):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    info = ServiceInfo.model_validate(resp.json)
    assert info.model_version == "1"
    assert info.openapi == "/openapi.json"
    listed = {(r.method, r.path) for r in info.routes}
    served = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert listed == served
    assert ("POST", "/predict/batch") in listed and ("GET", "/") in listed
    assert all(r.summary for r in info.routes)


def test_the_root_answers_without_a_model_too(make_app):
    resp = make_app(models=FixedSource(None)).test_client().get("/")
    assert resp.status_code == 200
    assert resp.json["model_version"] is None


def test_without_a_model_the_api_answers_503_but_takes_feedback_routes(make_app):
    reason = "no tracking store at /x/mlflow.db: train first with python modelling.py"
    client = make_app(models=FixedSource(None, reason)).test_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert Health.model_validate(health.json).status == "unhealthy"
    assert health.json["model_loaded"] is False
    assert health.json["reason"] == reason
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


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nope", 404),
        ("post", "/predict/", 404),
        ("get", "/predict", 405),
        ("delete", "/feedback", 405),
        ("post", "/health", 405),
    ],
)
def test_unknown_routes_and_methods_answer_json(client, method, path, status):
    resp = getattr(client, method)(path)
    assert resp.status_code == status
    assert resp.mimetype == "application/json"
    assert resp.json["error"]
    if status == 405:
        assert "Allow" in resp.headers


def test_an_unexpected_fault_answers_json_500_and_is_logged(client, monkeypatch, caplog):
    def broken(self, rows):
        """Fail as a fault of the server would, not of the client."""
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ServedModel, "predict_proba", broken)
    resp = client.post("/predict", json=SAMPLE)
    assert resp.status_code == 500
    assert resp.json == {"error": "internal server error"}
    assert "disk on fire" in caplog.text


def test_openapi_is_served(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.json["openapi"].startswith("3.")


def test_debugger_is_off_unless_flask_debug_is_1(make_app, monkeypatch):
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    assert make_app().debug is False
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert make_app().debug is True


def test_environment_sets_limits_and_explicit_settings_win(
    served_model, predlog, tmp_path, monkeypatch
):
    monkeypatch.setenv("MAX_BATCH_SIZE", "3")
    parts = {"models": FixedSource(served_model), "predlog": predlog}
    from_environment = create_app(None, metrics=ServingMetrics(), **parts)
    assert from_environment.extensions["penguins"].settings.max_batch_size == 3
    client = from_environment.test_client()
    assert client.post("/predict/batch", json={"samples": [SAMPLE] * 3}).status_code == 200
    assert client.post("/predict/batch", json={"samples": [SAMPLE] * 4}).status_code == 413
    explicit = create_app(
        from_env(ServingSettings, max_batch_size=7), metrics=ServingMetrics(), **parts
    )
    assert explicit.extensions["penguins"].settings.max_batch_size == 7
    resp = explicit.test_client().post("/predict/batch", json={"samples": [SAMPLE] * 7})
    assert resp.status_code == 200


def test_the_app_follows_its_model_source_until_closed(app, models):
    assert models.started and not models.stopped
    app.extensions["penguins"].close()
    assert models.stopped


def test_a_404_names_the_known_routes(client):
    resp = client.get("/nope")
    message = resp.json["error"]
    assert message.startswith("no route /nope; the routes are ")
    for route in ("GET /", "GET /health", "POST /predict", "POST /predict/batch", "POST /feedback"):
        assert route in message
    assert "/openapi.json" in message


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("get", "/predict", "POST"), ("post", "/health", "GET"), ("delete", "/feedback", "POST")],
)
def test_a_405_names_the_methods_the_route_takes(client, method, path, allowed):
    resp = getattr(client, method)(path)
    assert resp.status_code == 405
    assert resp.json["error"] == f"{path} does not take {method.upper()}; it takes {allowed}"
    assert allowed in resp.headers["Allow"]


class FullDisk:
    """A connection stand-in that fails every statement as SQLite does on a full disk."""

    def __init__(self, real) -> None:
        """Wrap the log's real connection."""
        self.real = real

    def __getattr__(self, name):
        """Fail the calls that write; pass the rest through."""
        if name in ("execute", "executemany"):

            def fail(*args, **kwargs):
                """Fail as a full disk does."""
                raise sqlite3.OperationalError("database or disk is full")

            return fail
        return getattr(self.real, name)

    def __enter__(self):
        """Open a transaction block."""
        return self

    def __exit__(self, *exc_info):
        """Close it, keeping the exception."""
        return False


@pytest.fixture
def full_disk(monkeypatch, predlog):
    """Make the app's prediction log fail every write until the returned function is called."""
    monkeypatch.setattr("penguins.serving.dataplane.PROBE_SECONDS", 0.0)
    real_connect = predlog._connect
    monkeypatch.setattr(predlog, "_connect", lambda: FullDisk(real_connect()))
    return lambda: monkeypatch.setattr(predlog, "_connect", real_connect)


def test_an_unwritable_log_answers_503_with_retry_after_then_recovers(client, full_disk, settings):
    for path, body in [("/predict", SAMPLE), ("/predict/batch", {"samples": [SAMPLE, GENTOO]})]:
        resp = client.post(path, json=body)
        assert resp.status_code == 503 and resp.mimetype == "application/json"
        assert resp.headers["Retry-After"] == "5"
        assert "cannot be written" in resp.json["error"]
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["model_loaded"] is True
    assert "database or disk is full" in health.json["reason"]
    full_disk()  # the disk has room again
    assert client.get("/health").status_code == 200  # found by probing, not by a prediction
    answer = client.post("/predict", json=SAMPLE)
    assert answer.status_code == 200
    assert logged_count(settings.prediction_log_uri) == 1  # only what was answered
    assert logged_row(settings.prediction_log_uri, answer.json["prediction_id"]) is not None


def test_feedback_on_an_unwritable_log_answers_503(client, full_disk):
    pid = client.post("/predict", json=SAMPLE)
    assert pid.status_code == 503
    body = {"prediction_id": str(uuid.uuid4()), "actual_species": "Adelie"}
    resp = client.post("/feedback", json=body)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
