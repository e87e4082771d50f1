"""inference.py: what it plans to send, and how it fails when the API is not there."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import inference
from penguins.config import DEFAULT_DATA_PATH, PROJECT_DIR
from penguins.features import BOUNDS, FEATURES, NUMERIC_FEATURES, load_dataset
from penguins.traffic import INVALID_KINDS, invalid_request, to_sample
from tests.support import free_port


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """Return the cleaned data set."""
    return load_dataset(DEFAULT_DATA_PATH)


def plan(data: pd.DataFrame, n: int, *argv: str) -> list:
    """Return the first ``n`` requests a planner makes for the given command line."""
    planner = inference.RequestPlanner(data, inference.parse_args(list(argv)))
    return [planner.next() for _ in range(n)]


def samples_of(request) -> list[dict]:
    """Return the samples a valid request carries."""
    body = json.loads(request.body)
    return body["samples"] if request.kind == "batch" else [body]


def test_defaults_are_bounded_and_local():
    args = inference.parse_args([])
    assert (args.count, args.duration, args.url) == (200, None, "http://127.0.0.1:5000")


@pytest.mark.parametrize(
    "argv",
    [
        ["--feedback-share", "1.5"],
        ["--invalid-share", "-0.1"],
        ["--batch-size", "1"],
        ["--count", "0"],
        ["--count", "5", "--duration", "5"],
        ["--rate", "-1"],
    ],
)
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        inference.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_planned_traffic_mixes_singles_and_batches_in_the_asked_shares(data):
    requests = plan(data, 2000, "--seed", "3", "--batch-share", "0.25", "--batch-size", "8")
    kinds = pd.Series([r.kind for r in requests]).value_counts(normalize=True)
    assert set(kinds.index) == {"single", "batch"}
    assert kinds["batch"] == pytest.approx(0.25, abs=0.04)
    sizes = [len(samples_of(r)) for r in requests if r.kind == "batch"]
    assert min(sizes) == 2 and max(sizes) == 8


def test_every_planned_sample_is_valid_and_carries_its_true_species(data):
    requests = plan(data, 500, "--seed", "4", "--batch-share", "0.5")
    named = total = 0
    for request in requests:
        samples = samples_of(request)
        assert len(samples) == len(request.truths)
        assert set(request.truths) <= set(data["species"])
        for sample in samples:
            for name in NUMERIC_FEATURES:
                assert BOUNDS[name].contains(sample[name]), (name, sample)
            assert ("island" in sample) != ("island_encoded" in sample)
            assert ("sex" in sample) != ("sex_encoded" in sample)
            named += "island" in sample
            total += 1
    assert named / total == pytest.approx(inference.NAMES_SHARE, abs=0.05)


def test_the_same_seed_plans_the_same_traffic(data):
    first = plan(data, 50, "--seed", "9", "--invalid-share", "0.3")
    second = plan(data, 50, "--seed", "9", "--invalid-share", "0.3")
    other = plan(data, 50, "--seed", "10", "--invalid-share", "0.3")
    assert first == second
    assert first != other


def test_drift_raises_mass_and_flipper_of_planned_samples(data):
    def means(*argv: str) -> pd.Series:
        rows = [s for r in plan(data, 400, "--seed", "5", *argv) for s in samples_of(r)]
        return pd.DataFrame(rows)[list(NUMERIC_FEATURES)].mean()

    plain, drifted = means(), means("--drift")
    assert drifted["body_mass_g"] - plain["body_mass_g"] > 800
    assert drifted["flipper_length_mm"] - plain["flipper_length_mm"] > 15
    assert abs(drifted["bill_length_mm"] - plain["bill_length_mm"]) < 1


def test_invalid_share_sends_every_kind_of_invalid_request(data):
    requests = plan(data, 600, "--seed", "6", "--invalid-share", "0.5")
    invalid = [r for r in requests if r.kind in INVALID_KINDS]
    assert len(invalid) / len(requests) == pytest.approx(0.5, abs=0.07)
    assert {r.kind for r in invalid} == set(INVALID_KINDS)
    assert all(r.expected_status in (400, 415, 422) and not r.truths for r in invalid)


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


def test_an_unreachable_api_exits_non_zero_with_one_line():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "inference.py", "--url", url, "--count", "5"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"inference: cannot reach the API at {url}: ConnectionError"
    ]
    assert result.stdout == ""
