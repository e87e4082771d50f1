"""Answers rendered as text, checked against the pydantic response models they promise."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from penguins.features import SPECIES
from penguins.predlog import Predictions
from penguins.serving import answers
from penguins.serving.dataplane import PredictionResult
from penguins.serving.errors import ApiError
from penguins.serving.ids import new_ids
from penguins.serving.schemas import (
    BatchPrediction,
    ErrorBody,
    ErrorDetail,
    Health,
    ModelInfo,
    Prediction,
)

PROBA = np.array(
    [
        [0.7, 0.2, 0.1],
        [1e-300, 0.25, 1.0 - 0.25 - 1e-300],  # a tiny probability is still a JSON number
        [0.1, 0.8, 0.1],
    ]
)


def result(proba: np.ndarray = PROBA, version: str = "7", seconds: float = 0.0125):
    """Return what the prediction service would hand the answers for these probabilities."""
    best = proba.argmax(axis=1).tolist()
    batch = Predictions(
        ids=new_ids(len(proba)),
        created_at=1.0,
        algorithm="svm",
        model_version=version,
        rows=[(39.1, 18.7, 181.0, 3750.0, 0, 1)] * len(proba),
        species=[SPECIES[i] for i in best],
        confidences=[p[i] for p, i in zip(proba.tolist(), best, strict=True)],
    )
    return PredictionResult(batch, proba, best, seconds)


def test_each_prediction_is_a_prediction_with_the_exact_probabilities():
    res = result()
    texts = [json.dumps(p) for p in json.loads(f"[{answers.predictions_json(res)}]")]
    assert len(texts) == len(PROBA)
    for text, row, pid, species in zip(
        texts, PROBA.tolist(), res.predictions.ids, res.predictions.species, strict=True
    ):
        parsed = Prediction.model_validate_json(text)
        assert [getattr(parsed.probabilities, s) for s in SPECIES] == row
        assert list(json.loads(text)["probabilities"]) == list(SPECIES)
        assert parsed.predicted_species == species
        assert parsed.confidence == max(row)
        assert parsed.prediction_time == 0.0125
        assert parsed.model_version == "7"
        assert parsed.prediction_id == uuid.UUID(pid)
        assert uuid.UUID(pid).version == 7


def test_one_prediction_answers_as_json():
    resp = answers.prediction(result(PROBA[:1]))
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert Prediction.model_validate_json(resp.get_data()).predicted_species == "Adelie"


def test_a_batch_is_a_batch_prediction_in_order():
    res = result()
    resp = answers.batch(res)
    assert resp.mimetype == "application/json"
    body = BatchPrediction.model_validate_json(resp.get_data())
    assert body.count == len(PROBA) == len(body.predictions)
    assert [p.predicted_species for p in body.predictions] == ["Adelie", "Gentoo", "Chinstrap"]
    assert [str(p.prediction_id) for p in body.predictions] == list(res.predictions.ids)
    assert (body.prediction_time, body.model_version) == (0.0125, "7")


def test_a_version_needing_escapes_stays_valid_json():
    version = 'v"1\\\n'
    resp = answers.batch(result(version=version))
    body = BatchPrediction.model_validate_json(resp.get_data())
    assert body.model_version == version
    assert {p.model_version for p in body.predictions} == {version}


def test_an_error_with_fields_names_them():
    error = ApiError(422, "invalid request", [ErrorDetail(field="samples[3].sex", message="bad")])
    resp = answers.error(error)
    assert resp.status_code == 422
    assert resp.mimetype == "application/json"
    assert ErrorBody.model_validate_json(resp.get_data()) == error.body()
    assert resp.json == {
        "error": "invalid request",
        "details": [{"field": "samples[3].sex", "message": "bad"}],
    }


def test_an_error_without_fields_has_no_details_key_and_keeps_its_headers():
    resp = answers.error(ApiError(405, "Method Not Allowed", headers={"Allow": "POST"}))
    assert resp.status_code == 405
    assert resp.json == {"error": "Method Not Allowed"}
    assert resp.headers["Allow"] == "POST"
    assert resp.mimetype == "application/json"


def test_an_error_about_one_field():
    error = ApiError.at_field(404, "unknown prediction_id", "prediction_id", "no such id")
    assert (error.status, error.error) == (404, "unknown prediction_id")
    assert error.details == [ErrorDetail(field="prediction_id", message="no such id")]
    assert str(error) == "404: unknown prediction_id"
    assert json.loads(error.to_json())["details"][0]["field"] == "prediction_id"


def test_health_without_a_model_is_503_unhealthy_with_the_reason():
    resp = answers.health(None, "no tracking store at /x/mlflow.db: train first")
    assert resp.status_code == 503
    assert Health.model_validate(resp.json).model_dump() == {
        "status": "unhealthy",
        "model_loaded": False,
        "model_version": None,
        "reason": "no tracking store at /x/mlflow.db: train first",
    }


def test_a_healthy_answer_carries_no_reason(served_model):
    resp = answers.health(served_model, None)
    assert resp.status_code == 200
    assert resp.json == {"status": "healthy", "model_loaded": True, "model_version": "1"}


@pytest.mark.parametrize("field", ["name", "version", "alias", "run_id", "algorithm"])
def test_model_info_shows_the_description(served_model, field):
    body = ModelInfo.model_validate(answers.model_info(served_model).json)
    assert getattr(body, field) == getattr(served_model.description, field)
    assert body.loaded_at == served_model.loaded_at
    assert body.uri == served_model.uri
