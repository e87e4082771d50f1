"""Inputs of the traffic: noisy rows in bounds, and the requests that carry them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from penguins.features import (
    BOUNDS,
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    SPECIES,
    TARGET,
    code_of,
)
from penguins.traffic import DRIFT_SHIFT, INVALID_KINDS, invalid_request, sample_inputs, to_sample
from penguins.traffic.inputs import valid_request

NAME_FIELDS = {"island_encoded": "island", "sex_encoded": "sex"}


def test_sampled_rows_are_noisy_copies_inside_the_bounds(data):
    rows = sample_inputs(data, 2000, np.random.default_rng(1))
    assert list(rows.columns) == [*FEATURES, TARGET]
    assert len(rows) == 2000 and set(rows[TARGET]) == set(SPECIES)
    for name in NUMERIC_FEATURES:
        assert rows[name].between(BOUNDS[name].low, BOUNDS[name].high).all(), name
        assert rows[name].mean() == pytest.approx(data[name].mean(), rel=0.05), name
    for name in CATEGORICAL_FEATURES:
        assert set(rows[name]) <= set(data[name]), name


def test_drift_shifts_mass_and_flipper_and_nothing_else(data):
    plain = sample_inputs(data, 3000, np.random.default_rng(2))
    drifted = sample_inputs(data, 3000, np.random.default_rng(2), drift=True)
    for name in NUMERIC_FEATURES:
        shift = drifted[name].mean() - plain[name].mean()
        assert shift == pytest.approx(DRIFT_SHIFT.get(name, 0.0), abs=0.1 * data[name].std())
        assert drifted[name].between(BOUNDS[name].low, BOUNDS[name].high).all(), name


def test_the_same_generator_state_draws_the_same_rows(data):
    first = sample_inputs(data, 50, np.random.default_rng(3))
    second = sample_inputs(data, 50, np.random.default_rng(3))
    assert first.equals(second)


def test_a_sample_by_code_carries_the_row_as_it_is(data):
    row = data.iloc[0]
    sample = to_sample(row)
    assert set(sample) == set(FEATURES)
    assert all(sample[name] == row[name] for name in FEATURES)


def test_a_sample_by_name_names_the_codes_of_its_row(data):
    for _, row in data.iterrows():
        sample = to_sample(row, use_names=True)
        assert set(sample) == set(NUMERIC_FEATURES) | set(NAME_FIELDS.values())
        for feature, name_field in NAME_FIELDS.items():
            assert code_of(feature, sample[name_field]) == row[feature]
    assert to_sample(data.iloc[0], use_names=True)["sex"].islower()


def test_one_row_is_a_single_request_and_several_a_batch(data):
    single = valid_request(data.iloc[:1], [False])
    assert (single.kind, single.path, single.expected_status) == ("single", "/predict", 200)
    assert json.loads(single.body) == to_sample(data.iloc[0])
    assert single.truths == (data[TARGET].iloc[0],)

    batch = valid_request(data.iloc[:3], [False, True, False])
    assert (batch.kind, batch.path, batch.content_type) == (
        "batch",
        "/predict/batch",
        "application/json",
    )
    samples = json.loads(batch.body)["samples"]
    assert samples[1] == to_sample(data.iloc[1], use_names=True)
    assert batch.truths == tuple(data[TARGET].iloc[:3])


@pytest.mark.parametrize("kind", sorted(INVALID_KINDS))
def test_each_invalid_request_breaks_the_contract_as_its_kind_says(kind, data):
    row = data.iloc[0]
    request = invalid_request(kind, row, np.random.default_rng(0))
    assert request.expected_status == INVALID_KINDS[kind]
    if kind == "bad_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(request.body)
        return
    body = json.loads(request.body)
    if kind == "not_json":
        assert request.content_type != "application/json" and body == to_sample(row)
    elif kind == "missing_field":
        assert len(body) == len(FEATURES) - 1
    elif kind == "out_of_range":
        assert any(not BOUNDS[n].contains(body[n]) for n in NUMERIC_FEATURES)
    elif kind == "wrong_type":
        assert any(isinstance(body[n], str) for n in NUMERIC_FEATURES)
    elif kind == "bad_batch_sample":
        assert request.path == "/predict/batch"
        assert any(not BOUNDS[n].contains(s[n]) for s in body["samples"] for n in NUMERIC_FEATURES)


def test_an_unknown_invalid_kind_is_refused(data):
    with pytest.raises(ValueError, match="unknown invalid request kind"):
        invalid_request("rude", data.iloc[0], np.random.default_rng(0))
