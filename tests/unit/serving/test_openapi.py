"""The OpenAPI document: valid OpenAPI 3, every route described, limits filled in."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from penguins.serving.openapi import build_openapi


@pytest.fixture
def document(client) -> dict:
    """Return the document the app serves."""
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.json


def test_document_is_valid_openapi(document):
    validate(document)


def test_every_route_is_described_with_its_methods(app, document):
    for rule in app.url_map.iter_rules():
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        assert methods <= set(document["paths"][rule.rule]), rule.rule


def test_request_schemas_carry_the_bounds_and_limits(make_app):
    app = make_app(max_batch_size=123)
    document = app.test_client().get("/openapi.json").json
    limit = app.extensions["penguins"].settings.body_limit
    assert (
        f"At most 123 samples per batch and {limit} bytes per body."
        in document["info"]["description"]
    )
    schemas = document["components"]["schemas"]
    assert schemas["BatchRequest"]["properties"]["samples"]["maxItems"] == 123
    bill = schemas["Sample"]["properties"]["bill_length_mm"]
    assert (bill["minimum"], bill["maximum"]) == (10.0, 100.0)
    assert schemas["Sample"]["additionalProperties"] is False


@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/feedback"])
def test_post_routes_document_their_errors(path):
    responses = build_openapi(10, 1000)["paths"][path]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= set(responses)
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
