"""PSI maths, binning against a reference, and the traffic sampler it is tested with."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from penguins.features import BOUNDS, CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES
from penguins.monitoring.drift import (
    PSI_DRIFT,
    PSI_WATCH,
    DriftBaseline,
    precision_of,
    psi,
    quantile_edges,
)
from penguins.monitoring.settings import MonitorSettings
from penguins.traffic.inputs import DRIFT_SHIFT, sample_inputs
from penguins.training.evaluation import split

SHIFTED = set(DRIFT_SHIFT)


def drifted(scores: dict[str, float]) -> set[str]:
    """Return the features whose PSI passes the drift line, as ml_drift_detected reads it."""
    return {name for name, value in scores.items() if value > PSI_DRIFT}


@pytest.fixture(scope="module")
def baseline(data: pd.DataFrame) -> DriftBaseline:
    """Return bins built from an 80% training-like split of the data."""
    return DriftBaseline(data.sample(frac=0.8, random_state=42))


def test_psi_of_identical_histograms_is_zero():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_matches_the_formula_worked_by_hand():
    # (0.9-0.5)ln(0.9/0.5) + (0.1-0.5)ln(0.1/0.5)
    assert psi([50, 50], [90, 10]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))


def test_psi_of_an_empty_bin_is_large_but_finite():
    value = psi([50, 50], [100, 0])
    assert math.isfinite(value) and value > PSI_DRIFT


def test_psi_rejects_mismatched_or_empty_histograms():
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        psi([1, 2], [0, 0])


def test_quantile_edges_split_the_reference_into_equal_shares():
    reference = np.arange(1000.0)
    edges = quantile_edges(reference, bins=10)
    assert len(edges) == 9
    counts = np.bincount(np.searchsorted(edges, reference, side="right"))
    assert counts.tolist() == [100] * 10


def test_quantile_edges_merge_ties():
    assert len(quantile_edges(np.array([1.0] * 50 + [2.0] * 50), bins=10)) < 9


def test_precision_is_the_fewest_decimals_that_write_every_value():
    assert precision_of(np.array([3250.0, 4100.0])) == 0
    assert precision_of(np.array([45.8, 39.1, 40.0])) == 1
    assert precision_of(np.array([0.125, 1.5])) == 3
    assert precision_of(np.array([1 / 3])) is None


def test_edges_are_exact_at_the_precision_of_the_data(data):
    # The champion's training split: np.quantile gives 45.800000000000004 for a
    # bill-length decile of 45.8 there.
    training = split(data).training
    bins = DriftBaseline(training).features["bill_length_mm"]
    assert 45.8 in bins.edges.tolist()
    for name in NUMERIC_FEATURES:
        edges = DriftBaseline(training).features[name].edges
        decimals = precision_of(training[name].to_numpy())
        assert decimals is not None and decimals <= 1, name
        assert edges.tolist() == np.round(edges, decimals).tolist(), name


def test_an_input_exactly_on_an_edge_falls_in_the_bin_above(data):
    training = split(data).training
    baseline = DriftBaseline(training)
    for name in NUMERIC_FEATURES:
        bins = baseline.features[name]
        decimals = precision_of(training[name].to_numpy())
        # Each edge as a client sends it: written at the data's precision, parsed back.
        inputs = np.array([float(f"{edge:.{decimals}f}") for edge in bins.edges])
        counts = bins.counts(inputs)
        assert counts.tolist() == [0] + [1] * len(bins.edges), (name, bins.edges.tolist())


def test_baseline_bins_numeric_features_at_deciles_and_categories_by_code(baseline):
    for name in NUMERIC_FEATURES:
        bins = baseline.features[name]
        # Ties in the data (whole millimetres, 25 g steps) make the deciles uneven, not wild.
        assert bins.expected.sum() == baseline.size
        assert bins.expected.max() <= 0.2 * baseline.size
    for name in CATEGORICAL_FEATURES:
        bins = baseline.features[name]
        assert bins.edges is None and bins.expected[-1] == 0  # no unknown codes in training


def test_in_distribution_inputs_stay_under_the_watch_line(data, baseline):
    current = sample_inputs(data, 1000, np.random.default_rng(7))
    scores = baseline.psi(current)
    assert set(scores) == set(FEATURES)
    assert max(scores.values()) < PSI_WATCH, scores
    assert drifted(scores) == set()


def test_shifted_inputs_drift_only_on_the_shifted_features(data, baseline):
    current = sample_inputs(data, 1000, np.random.default_rng(7), drift=True)
    scores = baseline.psi(current)
    assert drifted(scores) == SHIFTED, scores
    assert all(scores[f] < PSI_WATCH for f in FEATURES if f not in SHIFTED), scores


def test_an_unknown_category_code_counts_as_drift(data, baseline):
    current = sample_inputs(data, 500, np.random.default_rng(1))
    current["island_encoded"] = 7
    assert baseline.psi(current)["island_encoded"] > PSI_DRIFT


def test_baseline_accepts_rows_as_an_array_in_feature_order(data, baseline):
    current = sample_inputs(data, 300, np.random.default_rng(3))
    as_array = current[list(FEATURES)].to_numpy()
    assert baseline.psi(as_array) == baseline.psi(current)


def test_baseline_rejects_a_reference_without_the_features(data):
    with pytest.raises(ValueError, match="body_mass_g"):
        DriftBaseline(data.drop(columns=["body_mass_g"]))


def test_sampled_inputs_stay_in_bounds_even_when_drifted(data):
    for drift in (False, True):
        rows = sample_inputs(data, 5000, np.random.default_rng(0), drift=drift)
        for name, bounds in BOUNDS.items():
            assert rows[name].between(bounds.low, bounds.high).all(), name
        assert set(rows["species"]) <= set(data["species"])


def test_drift_shifts_the_mean_of_the_shifted_features(data):
    plain = sample_inputs(data, 3000, np.random.default_rng(0))
    shifted = sample_inputs(data, 3000, np.random.default_rng(0), drift=True)
    for name in NUMERIC_FEATURES:
        delta = shifted[name].mean() - plain[name].mean()
        assert delta == pytest.approx(DRIFT_SHIFT.get(name, 0.0), abs=1e-6 + 0.01 * abs(delta))


def test_noise_alone_stays_under_the_watch_line_at_the_minimum_sample_count(data):
    # In-distribution windows of the fewest inputs PSI is exported for, drawn as the
    # traffic draws them, against the champion's training split: noise must not read
    # as "watch" in more than one window in a hundred.
    baseline = DriftBaseline(split(data).training)
    size, windows = MonitorSettings().drift_min_samples, 200
    rng = np.random.default_rng(2024)
    over = sum(
        max(baseline.psi(sample_inputs(data, size, rng)).values()) >= PSI_WATCH
        for _ in range(windows)
    )
    assert over <= windows // 100, f"{over} of {windows} windows of {size} inputs reach {PSI_WATCH}"
