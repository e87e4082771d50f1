"""Every batch answer equals the single answer for the same sample, and is logged as answered.

The inputs are every row of the shipped data set plus the corners of the bounds (each
measurement at its lowest and highest accepted value, on each island, of each sex),
spelled in every way the API accepts: codes, names in several cases, mixed pairs,
integral numbers as JSON integers. Each candidate algorithm is served in turn, since
each has its own fast path (the forest's switches from a numpy walk to scikit-learn's
loop past 64 rows).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import uuid

import numpy as np
import pytest

from penguins.config import from_env
from penguins.features import (
    BOUNDS,
    FEATURES,
    ISLAND_CODES,
    NUMERIC_FEATURES,
    SEX_CODES,
    SPECIES,
)
from penguins.predlog import log_path
from penguins.registry import ModelDescription
from penguins.serving.model import ServedModel
from penguins.serving.settings import ServingSettings
from penguins.training.candidates import candidates
from tests.unit.serving.conftest import FixedSource

ALGORITHMS = [c.name for c in candidates()]
ISLANDS = {code: name for name, code in ISLAND_CODES.items()}
SEXES = {code: name for name, code in SEX_CODES.items()}
EPS = float(np.finfo(float).eps)  # 2**-52, one unit in the last place of 1.0
# How far a probability in a batch of two or more rows may be from the same sample's
# single answer. A one-row request multiplies a vector by the weights (BLAS gemv); more
# rows make it a matrix product (gemm), whose kernels add the same terms in another
# order and, by the number of rows, in other blocks. So the logistic regression and the
# SVM (matrix products in their fast paths) differ from the single answers in the last
# bits: at most 2.125 EPS (logistic regression, at the corners of the bounds) and under
# 1 EPS (SVM) over these inputs with OpenBLAS 0.3.31; 4 EPS leaves room for another CPU's
# kernels and is still a billion times below the smallest gap between a sample's two
# likeliest species (about 0.01). The forest has no matrix product (trees compare
# values and average their leaves tree after tree on either path): exactly equal.
# A batch of one row runs exactly the single request's computation: exactly equal.
TOLERANCE = {"logistic_regression": 4 * EPS, "svm": 4 * EPS, "random_forest": 0.0}


def model_rows(data) -> list[tuple[float, float, float, float, int, int]]:
    """Return every data row and every corner of the bounds, as model rows."""
    rows = [tuple(r) for r in data[list(FEATURES)].itertuples(index=False)]
    corners = itertools.product(
        *[(BOUNDS[name].low, BOUNDS[name].high) for name in NUMERIC_FEATURES],
        ISLANDS,
        SEXES,
    )
    return [(*map(float, r[:4]), int(r[4]), int(r[5])) for r in rows] + list(corners)


def spelled(row: tuple, way: int) -> dict:
    """Return a model row as a request sample, written in one of the ways the API accepts."""
    numbers = dict(zip(NUMERIC_FEATURES, row[:4], strict=True))
    if way % 2:  # integral values as JSON integers: 181 rather than 181.0
        numbers = {k: int(v) if float(v).is_integer() else v for k, v in numbers.items()}
    island, sex = ISLANDS[row[4]], SEXES[row[5]]
    pairs = [
        {"island_encoded": row[4], "sex_encoded": row[5]},
        {"island": island, "sex": sex},
        {"island": island.lower(), "sex": sex.upper()},
        {"island": island.upper(), "sex_encoded": row[5]},
        {"island_encoded": row[4], "sex": sex.lower()},
        {"island": island.swapcase(), "sex": sex.swapcase()},
    ]
    return {**numbers, **pairs[way % len(pairs)]}


@pytest.fixture(scope="module")
def inputs(data) -> list[tuple[dict, tuple]]:
    """Return (request sample, the model row it stands for) for every varied input."""
    return [(spelled(row, i), row) for i, row in enumerate(model_rows(data))]


@pytest.fixture(params=ALGORITHMS)
def algorithm(request) -> str:
    """Return the name of the algorithm served."""
    return request.param


@pytest.fixture
def served(algorithm, fitted) -> ServedModel:
    """Return the fitted pipeline of the algorithm, served through its verified fast path."""
    description = ModelDescription("penguins-classifier", "1", "champion", "run-1", algorithm, {})
    uri = from_env(ServingSettings, environ={}).served_uri
    model = ServedModel.build(fitted[algorithm], description, uri)
    assert model.fast is not None, "the fast path is the one under test"
    return model


@pytest.fixture
def api(make_app, served):
    """Return the app serving the algorithm, with default settings, and those settings."""
    app = make_app(models=FixedSource(served))
    return app, app.extensions["penguins"].settings


def logged(uri: str) -> dict[str, sqlite3.Row]:
    """Return every logged prediction by id, read in one query."""
    with contextlib.closing(sqlite3.connect(log_path(uri))) as conn:
        conn.row_factory = sqlite3.Row
        return {r["id"]: r for r in conn.execute("SELECT * FROM predictions")}


def single_answers(client, samples: list[dict]) -> list[dict]:
    """POST each sample to /predict; return the answers."""
    answers = []
    for sample in samples:
        resp = client.post("/predict", json=sample)
        assert resp.status_code == 200, (sample, resp.json)
        answers.append(resp.json)
    return answers


def batch_answers(client, samples: list[dict]) -> list[dict]:
    """POST the samples to /predict/batch in one request; return its predictions."""
    resp = client.post("/predict/batch", json={"samples": samples})
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert list(body) == ["predictions", "count", "prediction_time", "model_version"]
    assert body["count"] == len(body["predictions"]) == len(samples)
    assert body["model_version"] == "1"
    return body["predictions"]


def check_parity(got: dict, single: dict, tolerance: float) -> None:
    """Check a batch answer against the single answer of the same sample.

    Every field but prediction_id and prediction_time is the same: the species and
    version exactly, the probabilities within ``tolerance``; and the confidence is
    exactly the answer's own largest probability, the one of its species.
    """
    assert list(got) == list(single)
    assert list(got["probabilities"]) == list(SPECIES)
    assert got["predicted_species"] == single["predicted_species"]
    assert got["model_version"] == single["model_version"]
    probs = got["probabilities"]
    assert got["confidence"] == max(probs.values()) == probs[got["predicted_species"]]
    for name in SPECIES:
        assert abs(probs[name] - single["probabilities"][name]) <= tolerance, (name, got, single)
    assert abs(got["confidence"] - single["confidence"]) <= tolerance


def check_logged(log: dict, answers: list[dict], rows: list[tuple], algorithm: str) -> None:
    """Check each answer is logged with its inputs, species and confidence as answered."""
    for answer, row in zip(answers, rows, strict=True):
        entry = log[answer["prediction_id"]]
        assert entry["predicted_species"] == answer["predicted_species"]
        assert entry["confidence"] == answer["confidence"]  # the same float, bit for bit
        assert tuple(entry[f] for f in FEATURES) == row  # names stored as codes
        assert (entry["algorithm"], entry["model_version"]) == (algorithm, "1")


def check_ids(answers: list[dict]) -> None:
    """Check every prediction id is a UUIDv7 and none is repeated."""
    ids = [a["prediction_id"] for a in answers]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_batch_of_every_input_answers_as_each_single_request(api, inputs, algorithm):
    app, settings = api
    client = app.test_client()
    samples, rows = [s for s, _ in inputs], [r for _, r in inputs]
    singles = single_answers(client, samples)
    batch = batch_answers(client, samples)
    for got, single in zip(batch, singles, strict=True):
        check_parity(got, single, TOLERANCE[algorithm])
    assert {a["predicted_species"] for a in batch} == set(SPECIES)  # a varied set indeed
    check_ids(singles + batch)
    log = logged(settings.prediction_log_uri)
    assert len(log) == len(singles) + len(batch)
    check_logged(log, batch, rows, algorithm)
    check_logged(log, singles, rows, algorithm)


def test_batches_of_one_two_and_the_maximum_answer_in_order(api, inputs, algorithm):
    app, settings = api
    client = app.test_client()
    samples, rows = [s for s, _ in inputs], [r for _, r in inputs]
    singles = single_answers(client, samples)
    answered = list(singles)

    ones = [batch_answers(client, [sample])[0] for sample in samples]
    for got, single in zip(ones, singles, strict=True):
        check_parity(got, single, 0.0)  # the very computation of the single request
    answered += ones

    # Pairs of neighbours, then the same pairs swapped: answers follow the order sent.
    for first, second in [(0, 1), (1, 0)]:
        for i in range(0, len(samples) - 1, 2):
            pair = batch_answers(client, [samples[i + first], samples[i + second]])
            check_parity(pair[0], singles[i + first], TOLERANCE[algorithm])
            check_parity(pair[1], singles[i + second], TOLERANCE[algorithm])
            answered += pair

    limit = settings.max_batch_size
    assert limit == 10_000  # the documented default (CONTRACT.md, MAX_BATCH_SIZE)
    order = [k % len(samples) for k in range(limit)]
    order[: len(samples)] = order[: len(samples)][::-1]  # not merely the order of the singles
    full = batch_answers(client, [samples[k] for k in order])
    for got, k in zip(full, order, strict=True):
        check_parity(got, singles[k], TOLERANCE[algorithm])
    answered += full

    check_ids(answered)
    log = logged(settings.prediction_log_uri)
    assert len(log) == len(answered)
    check_logged(log, full, [rows[k] for k in order], algorithm)
    check_logged(log, ones, rows, algorithm)

    over = client.post("/predict/batch", json={"samples": [samples[0]] * (limit + 1)})
    assert over.status_code == 413  # so the batch above was the largest allowed
    assert len(logged(settings.prediction_log_uri)) == len(answered)


def test_the_inputs_cover_every_spelling_and_the_bounds(inputs, data):
    """Guard the test's own inputs: what the parity is checked on."""
    samples = [s for s, _ in inputs]
    assert len(inputs) == len(data) + 2**4 * len(ISLANDS) * len(SEXES)
    given = {frozenset(k for k in s if k not in NUMERIC_FEATURES) for s in samples}
    assert given == {
        frozenset(p)
        for p in itertools.product(("island", "island_encoded"), ("sex", "sex_encoded"))
    }
    assert {s["island"] for s in samples if "island" in s} >= {"dream", "DREAM", "dREAM"}
    assert any(type(s["flipper_length_mm"]) is int for s in samples)
    for name in NUMERIC_FEATURES:
        values = {s[name] for s in samples}
        assert {BOUNDS[name].low, BOUNDS[name].high} <= values
    assert json.loads(json.dumps(samples)) == samples
