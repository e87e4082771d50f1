"""The request planner: shares, batch sizes, names, drift and invalid kinds, from one seed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from penguins.features import BOUNDS, NUMERIC_FEATURES
from penguins.traffic import INVALID_KINDS
from penguins.traffic.planner import NAMES_SHARE, RequestPlanner


@pytest.fixture
def plan(data, settings_of):
    """Return a function giving the first ``n`` requests planned for a command line."""

    def first(n: int, *argv: str) -> list:
        """Plan ``n`` requests with the settings of ``argv``."""
        planner = RequestPlanner(data, settings_of(*argv))
        return [planner.next() for _ in range(n)]

    return first


def samples_of(request) -> list[dict]:
    """Return the samples a valid request carries."""
    body = json.loads(request.body)
    return body["samples"] if request.kind == "batch" else [body]


def test_planned_traffic_mixes_singles_and_batches_in_the_asked_shares(plan):
    requests = plan(2000, "--seed", "3", "--batch-share", "0.25", "--batch-size", "8")
    kinds = pd.Series([r.kind for r in requests]).value_counts(normalize=True)
    assert set(kinds.index) == {"single", "batch"}
    assert kinds["batch"] == pytest.approx(0.25, abs=0.04)
    sizes = [len(samples_of(r)) for r in requests if r.kind == "batch"]
    assert min(sizes) == 2 and max(sizes) == 8


def test_every_planned_sample_is_valid_and_carries_its_true_species(plan, data):
    requests = plan(500, "--seed", "4", "--batch-share", "0.5")
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
    assert named / total == pytest.approx(NAMES_SHARE, abs=0.05)


def test_the_same_seed_plans_the_same_traffic(plan):
    first = plan(50, "--seed", "9", "--invalid-share", "0.3")
    second = plan(50, "--seed", "9", "--invalid-share", "0.3")
    other = plan(50, "--seed", "10", "--invalid-share", "0.3")
    assert first == second
    assert first != other


def test_drift_raises_mass_and_flipper_of_planned_samples(plan):
    def means(*argv: str) -> pd.Series:
        """Return the mean of each numeric feature over 400 planned requests."""
        rows = [s for r in plan(400, "--seed", "5", *argv) for s in samples_of(r)]
        return pd.DataFrame(rows)[list(NUMERIC_FEATURES)].mean()

    plain, drifted = means(), means("--drift")
    assert drifted["body_mass_g"] - plain["body_mass_g"] > 800
    assert drifted["flipper_length_mm"] - plain["flipper_length_mm"] > 15
    assert abs(drifted["bill_length_mm"] - plain["bill_length_mm"]) < 1


def test_invalid_share_sends_every_kind_of_invalid_request(plan):
    requests = plan(600, "--seed", "6", "--invalid-share", "0.5")
    invalid = [r for r in requests if r.kind in INVALID_KINDS]
    assert len(invalid) / len(requests) == pytest.approx(0.5, abs=0.07)
    assert {r.kind for r in invalid} == set(INVALID_KINDS)
    assert all(r.expected_status in (400, 415, 422) and not r.truths for r in invalid)


@pytest.mark.parametrize(("share", "low", "high"), [("0", 0, 0), ("0.3", 0.25, 0.35), ("1", 1, 1)])
def test_feedback_is_planned_for_the_asked_share(plan, share, low, high):
    requests = plan(1000, "--seed", "8", "--batch-share", "0.3", "--feedback-share", share)
    assert all(len(r.feedback) == len(r.truths) for r in requests)
    wanted = [send for r in requests for send in r.feedback]
    assert low <= sum(wanted) / len(wanted) <= high
