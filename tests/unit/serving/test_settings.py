"""The serving settings: the model URI served, the body limit, what combinations are refused."""

from __future__ import annotations

import pytest

from penguins.config import from_env
from penguins.serving.settings import MIN_BODY_BYTES, ServingSettings


def settings(**environ: str) -> ServingSettings:
    """Return the settings an environment of exactly ``environ`` gives."""
    return from_env(ServingSettings, environ=environ)


def test_the_registered_champion_is_served_unless_a_model_uri_is_given():
    assert settings().served_uri == "models:/penguins-classifier@champion"
    named = settings(MODEL_NAME="other", MODEL_ALIAS="challenger")
    assert named.served_uri == "models:/other@challenger"
    assert settings(MODEL_URI="runs:/abc/model").served_uri == "runs:/abc/model"


@pytest.mark.parametrize(
    ("environ", "limit"),
    [
        ({}, 10_000 * 1024),
        ({"MAX_BATCH_SIZE": "5"}, MIN_BODY_BYTES),
        ({"MAX_BATCH_SIZE": "5", "MAX_BODY_BYTES": "2000"}, 2000),
    ],
    ids=["a full batch", "at least the minimum", "explicit"],
)
def test_the_body_limit_fits_a_full_batch_unless_set(environ, limit):
    assert settings(**environ).body_limit == limit


@pytest.mark.parametrize(("port", "problem"), [(0, None), (65535, None), (65536, "--port")])
def test_a_port_beyond_65535_is_a_problem(port, problem):
    found = from_env(ServingSettings, environ={}, port=port).problem()
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize("name", ["MAX_BATCH_SIZE", "WEB_CONCURRENCY"])
def test_a_count_below_one_in_the_environment_is_refused(name):
    with pytest.raises(ValueError, match=name):
        settings(**{name: "0"})
