"""What clients can send wrong, and the exact status and field each mistake gets."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from penguins.features import BOUNDS
from penguins.serving.schemas import ErrorBody, Sample, fast_rows, field_path
from tests.support.samples import SAMPLE, SAMPLE_BY_NAME


def without(sample: dict, *names: str) -> dict:
    """Return the sample less some fields."""
    return {k: v for k, v in sample.items() if k not in names}


def post_raw(client, path: str, body: str | bytes, content_type="application/json"):
    """Post a body exactly as given."""
    return client.post(path, data=body, content_type=content_type)


def check_error(resp, status: int, field: str | None = None) -> dict:
    """Check an error answer: status, JSON shape, and the field named in its details."""
    assert resp.status_code == status, resp.data[:300]
    assert resp.mimetype == "application/json"
    ErrorBody.model_validate(resp.json)
    assert resp.json["error"]
    if field is not None:
        assert field in [d["field"] for d in resp.json["details"]], resp.json
    return resp.json


SAMPLE_422 = [
    # (description, sample, field at fault)
    ("missing number", without(SAMPLE, "bill_depth_mm"), "bill_depth_mm"),
    ("missing island", without(SAMPLE, "island_encoded"), "island_encoded"),
    ("missing sex name", without(SAMPLE_BY_NAME, "sex"), "sex_encoded"),
    ("both island spellings", {**SAMPLE, "island": "Dream"}, "island"),
    ("both sex spellings", {**SAMPLE_BY_NAME, "sex_encoded": 0}, "sex"),
    ("unknown island name", {**SAMPLE_BY_NAME, "island": "Mars"}, "island"),
    ("unknown sex name", {**SAMPLE_BY_NAME, "sex": "x"}, "sex"),
    ("unknown island code", {**SAMPLE, "island_encoded": 3}, "island_encoded"),
    ("negative sex code", {**SAMPLE, "sex_encoded": -1}, "sex_encoded"),
    ("code as float", {**SAMPLE, "island_encoded": 1.0}, "island_encoded"),
    ("code as bool", {**SAMPLE, "sex_encoded": True}, "sex_encoded"),
    ("code as string", {**SAMPLE, "island_encoded": "1"}, "island_encoded"),
    ("code null", {**SAMPLE, "island_encoded": None}, "island_encoded"),
    ("name as number", {**SAMPLE_BY_NAME, "island": 2}, "island"),
    ("number as bool", {**SAMPLE, "body_mass_g": True}, "body_mass_g"),
    ("number as string", {**SAMPLE, "bill_length_mm": "39.1"}, "bill_length_mm"),
    ("number null", {**SAMPLE, "bill_length_mm": None}, "bill_length_mm"),
    ("number as list", {**SAMPLE, "bill_length_mm": [39.1]}, "bill_length_mm"),
    ("number as object", {**SAMPLE, "bill_length_mm": {"v": 1}}, "bill_length_mm"),
    ("unexpected field", {**SAMPLE, "species": "Adelie"}, "species"),
    ("absurd magnitude", {**SAMPLE, "body_mass_g": 1e300}, "body_mass_g"),
    ("metres not mm", {**SAMPLE, "flipper_length_mm": 0.181}, "flipper_length_mm"),
    ("zero", {**SAMPLE, "bill_depth_mm": 0}, "bill_depth_mm"),
    ("negative", {**SAMPLE, "bill_depth_mm": -18.7}, "bill_depth_mm"),
]


@pytest.mark.parametrize(("case", "sample", "field"), SAMPLE_422, ids=[c[0] for c in SAMPLE_422])
def test_invalid_sample_is_422_naming_the_field(client, case, sample, field):
    check_error(client.post("/predict", json=sample), 422, field)


@pytest.mark.parametrize(("case", "sample", "field"), SAMPLE_422, ids=[c[0] for c in SAMPLE_422])
def test_invalid_batch_row_is_422_naming_its_index(client, case, sample, field):
    resp = client.post("/predict/batch", json={"samples": [SAMPLE, SAMPLE, SAMPLE, sample]})
    check_error(resp, 422, f"samples[3].{field}")


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bounds_are_closed_and_enforced_on_both_sides(client, name):
    low, high = BOUNDS[name].low, BOUNDS[name].high
    assert client.post("/predict", json={**SAMPLE, name: low}).status_code == 200
    assert client.post("/predict", json={**SAMPLE, name: high}).status_code == 200
    below = {**SAMPLE, name: low - 0.001}
    above = {**SAMPLE, name: high * 1.001}
    check_error(client.post("/predict", json=below), 422, name)
    check_error(client.post("/predict", json=above), 422, name)


@pytest.mark.parametrize(
    "literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 5000]
)
def test_non_finite_and_overflowing_numbers_are_422(client, literal):
    body = json.dumps(SAMPLE).replace("39.1", literal)
    check_error(post_raw(client, "/predict", body), 422, "bill_length_mm")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "samples"),
        ({"samples": []}, "samples"),
        ({"samples": SAMPLE}, "samples"),
        ({"samples": "all"}, "samples"),
        ({"samples": None}, "samples"),
        ({"samples": [SAMPLE], "extra": 1}, "extra"),
        ({"samples": [SAMPLE, 5]}, "samples[1]"),
        ([SAMPLE], "body"),
    ],
)
def test_batch_envelope_errors_are_422(client, body, field):
    check_error(client.post("/predict/batch", json=body), 422, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prediction_id": str(uuid.uuid4()), "actual_species": "Emperor"}, "actual_species"),
        ({"prediction_id": str(uuid.uuid4()), "actual_species": "adelie"}, "actual_species"),
        ({"prediction_id": str(uuid.uuid4())}, "actual_species"),
        ({"prediction_id": "not-a-uuid", "actual_species": "Adelie"}, "prediction_id"),
        ({"prediction_id": 42, "actual_species": "Adelie"}, "prediction_id"),
        ({"actual_species": "Adelie"}, "prediction_id"),
        ({"prediction_id": str(uuid.uuid4()), "actual_species": "Adelie", "x": 1}, "x"),
    ],
)
def test_invalid_feedback_is_422(client, body, field):
    check_error(client.post("/feedback", json=body), 422, field)


def test_too_many_samples_is_413(make_app):
    client = make_app(max_batch_size=5).test_client()
    assert client.post("/predict/batch", json={"samples": [SAMPLE] * 5}).status_code == 200
    resp = client.post("/predict/batch", json={"samples": [SAMPLE] * 6})
    check_error(resp, 413, "samples")


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(max_body_bytes=2000).test_client()
    check_error(post_raw(client, "/predict", " " * 2001), 413)
    assert client.post("/predict", json=SAMPLE).status_code == 200


def test_a_full_batch_fits_the_default_body_limit(app, settings):
    """MAX_BATCH_SIZE samples, pretty-printed with long decimals, are under the limit."""
    digits = 0.123456789012345
    long_sample = {k: v + digits if isinstance(v, float) else v for k, v in SAMPLE.items()}
    body = json.dumps({"samples": [long_sample] * settings.max_batch_size}, indent=4)
    assert app.config["MAX_CONTENT_LENGTH"] == settings.body_limit
    assert len(body.encode()) < app.config["MAX_CONTENT_LENGTH"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{", "application/json"),
        ("", "application/json"),
        ("{'single': 'quotes'}", "application/json"),
        ('{"a": 1} trailing', "application/json"),
        ("[" * 100_000 + "]" * 100_000, "application/json"),
        (b"\xff\xfe\xfa\xfb\x00", "application/json"),
        (b'{"bill_length_mm": "\xe9"}', "application/json"),
    ],
    ids=["truncated", "empty", "quotes", "trailing", "deep nesting", "binary", "latin-1"],
)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/feedback"])
def test_invalid_json_is_400(client, path, body, content_type):
    check_error(post_raw(client, path, body, content_type), 400)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/feedback"])
def test_a_body_that_is_not_json_typed_is_415(client, path, content_type):
    check_error(post_raw(client, path, json.dumps(SAMPLE), content_type), 415)


def test_json_with_a_charset_or_a_json_suffix_type_is_accepted(client):
    body = json.dumps(SAMPLE)
    assert post_raw(client, "/predict", body, "application/json; charset=utf-8").status_code == 200
    assert post_raw(client, "/predict", body, "application/vnd.api+json").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        "null",
        "0",
        '"text"',
        "[]",
        "{}",
        '{"samples": [[[[[]]]]]}',
        '{"prediction_id": null}',
        '{"bill_length_mm": {"$gt": 0}}',
        json.dumps({"samples": [{"x": "y" * 10_000}] * 50}),
        json.dumps({"a" * 10_000: 1}),
        # JSON escapes of NUL and a lone surrogate, in a value, a key, an id
        '{"island": "' + r"\u0000\ud800" * 10 + '"}',
        r'{"\ud800": 1}',
        r'{"prediction_id": "\ud800\u0000", "actual_species": "\ud800"}',
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/feedback"])
def test_no_client_input_reaches_the_500_handler(client, path, body):
    resp = post_raw(client, path, body)
    assert 400 <= resp.status_code < 500
    assert resp.json["error"]


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("samples", 3, "bill_depth_mm"), "samples[3].bill_depth_mm"),
        (("bill_depth_mm",), "bill_depth_mm"),
        ((), "body"),
        (("samples", 0), "samples[0]"),
    ],
)
def test_field_paths(loc, path):
    assert field_path(loc) == path


def test_sample_row_is_in_feature_order_with_codes():
    assert Sample.model_validate(SAMPLE_BY_NAME).row() == (39.1, 18.7, 181.0, 3750.0, 0, 1)


# ---- the pydantic-free happy path agrees with the models ----------------------------

FAST_PATH_CASES = [
    SAMPLE,
    SAMPLE_BY_NAME,
    {**SAMPLE, "bill_length_mm": 39},  # an integer for a number
    {**without(SAMPLE_BY_NAME, "island"), "island": "  dReAm\t"},
    {**SAMPLE, "bill_length_mm": BOUNDS["bill_length_mm"].low},
    {**SAMPLE, "body_mass_g": BOUNDS["body_mass_g"].high},
    *(sample for _, sample, _ in SAMPLE_422),
    {**SAMPLE, "bill_length_mm": True},
    {**SAMPLE, "bill_length_mm": "39.1"},
    {**SAMPLE, "bill_length_mm": float("nan")},
    {**SAMPLE, "bill_length_mm": float("inf")},
    {**SAMPLE, "island_encoded": True},
    {**SAMPLE, "island_encoded": 1.0},
    {**SAMPLE, "island_encoded": 2**70},
    {**SAMPLE, "island_encoded": None},
    {**SAMPLE, "island": None},
    {**without(SAMPLE, "island_encoded"), "island": "Biſcoe"},  # folds to s in Unicode
    {**without(SAMPLE, "island_encoded"), "island": "Torgersen", "sex": "male"},
    {**without(SAMPLE, "island_encoded", "sex_encoded"), "island": 1, "sex": "male"},
]


@pytest.mark.parametrize("sample", FAST_PATH_CASES)
def test_fast_rows_accepts_only_what_sample_accepts_with_the_same_row(sample):
    try:
        expected = [Sample.model_validate(sample).row()]
    except ValidationError:
        expected = None
    rows = fast_rows([sample])
    if expected is None:
        assert rows is None
    else:
        assert rows in (None, expected)
        assert rows is None or [type(v) for v in rows[0]] == [type(v) for v in expected[0]]


def test_fast_rows_leaves_empty_and_non_lists_to_the_models():
    assert fast_rows([]) is None
    assert fast_rows({"0": SAMPLE}) is None
    assert fast_rows([SAMPLE, [SAMPLE]]) is None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        # orjson reads a 70-bit integer as a float; the answer is that of the exact integer.
        ({**SAMPLE, "island_encoded": 2**70}, "island_encoded", "unknown island code"),
        ({**SAMPLE, "sex_encoded": True}, "sex_encoded", "valid integer"),
    ],
)
def test_samples_the_fast_path_refuses_get_the_models_answer(client, body, field, message):
    for path, sent, where in [
        ("/predict", body, field),
        ("/predict/batch", {"samples": [SAMPLE, body]}, f"samples[1].{field}"),
    ]:
        error = check_error(post_raw(client, path, json.dumps(sent)), 422, where)
        assert message in error["details"][0]["message"], error


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: b"\xef\xbb\xbf" + text.encode(),  # a UTF-8 byte order mark
        lambda text: text.encode("utf-16"),
    ],
)
def test_json_the_standard_library_reads_is_still_answered(client, encode):
    assert post_raw(client, "/predict", encode(json.dumps(SAMPLE))).status_code == 200
    body = encode(json.dumps({"samples": [SAMPLE, SAMPLE_BY_NAME]}))
    resp = post_raw(client, "/predict/batch", body)
    assert resp.status_code == 200
    assert resp.json["count"] == 2


def _details(resp) -> dict[str, str]:
    """Return the 422's details as {field: message}."""
    assert resp.status_code == 422, resp.json
    return {d["field"]: d["message"] for d in resp.json["details"]}


@pytest.mark.parametrize(("kind", "name"), [("island", "biscoe"), ("sex", "male")])
def test_a_name_sent_as_a_code_points_at_the_name_field(client, kind, name):
    body = {**SAMPLE, f"{kind}_encoded": name}
    message = _details(client.post("/predict", json=body))[f"{kind}_encoded"]
    assert f"give it as {kind} instead" in message and "takes a code" in message


@pytest.mark.parametrize("body", [[SAMPLE], [], "samples", 3])
def test_a_batch_that_is_not_an_object_says_what_is_expected(client, body):
    details = _details(client.post("/predict/batch", json=body))
    assert details == {"body": details["body"]}
    assert 'expected a JSON object with "samples"' in details["body"]
    assert "BatchRequest" not in details["body"]


def test_a_sample_that_is_not_an_object_says_what_is_expected(client):
    details = _details(client.post("/predict", json=[SAMPLE]))
    assert "expected a JSON object with one penguin's fields" in details["body"]
    assert "Sample" not in details["body"]


def test_missing_numbers_and_a_missing_pair_are_listed_together(client):
    body = {"sex": "male", "bill_length_mm": 39.1}
    details = _details(client.post("/predict", json=body))
    assert set(details) == {"bill_depth_mm", "flipper_length_mm", "body_mass_g", "island_encoded"}
    assert details["island_encoded"] == "Field required: give island_encoded or island"


def test_in_a_batch_every_sample_lists_its_pairs_in_order(client):
    bad = {k: v for k, v in SAMPLE.items() if k not in ("bill_depth_mm", "island_encoded")}
    both = {**SAMPLE, "sex": "male", "bill_length_mm": -1}
    resp = client.post("/predict/batch", json={"samples": [SAMPLE, bad, both]})
    fields = [d["field"] for d in resp.json["details"]]
    assert fields == [
        "samples[1].bill_depth_mm",
        "samples[1].island_encoded",
        "samples[2].bill_length_mm",
        "samples[2].sex",
    ]


def test_feedback_errors_name_only_feedback_fields(client):
    resp = client.post("/feedback", json={"prediction_id": "x", "actual_species": "Adelie"})
    assert set(_details(resp)) == {"prediction_id"}


def expected_rows(samples: list) -> list[tuple] | None:
    """Return what the models make of samples, or None when any is refused."""
    try:
        return [Sample.model_validate(s).row() for s in samples]
    except ValidationError:
        return None


@pytest.mark.parametrize("sample", FAST_PATH_CASES)
@pytest.mark.parametrize(
    "batch",
    [lambda s: [s, s, s], lambda s: [SAMPLE, s], lambda s: [SAMPLE_BY_NAME, s, SAMPLE_BY_NAME]],
    ids=["alone", "after a code", "among names"],
)
def test_fast_rows_of_a_batch_agree_with_the_models_column_by_column(sample, batch):
    samples = batch(sample)
    expected = expected_rows(samples)
    rows = fast_rows(samples)
    if expected is None:
        assert rows is None
    else:
        assert rows in (None, expected)
        assert rows is None or [[type(v) for v in r] for r in rows] == [
            [type(v) for v in r] for r in expected
        ]


@pytest.mark.parametrize(
    "samples",
    [
        [SAMPLE] * 5,
        [SAMPLE_BY_NAME] * 5,
        [SAMPLE, SAMPLE_BY_NAME, {**SAMPLE, "bill_length_mm": 39}],
        [{**without(SAMPLE_BY_NAME, "island"), "island": n} for n in ("dream", " DREAM", "Dream")],
    ],
    ids=["codes", "names", "mixed", "spellings"],
)
def test_fast_rows_takes_uniform_valid_batches(samples):
    assert fast_rows(samples) == expected_rows(samples)
