"""What came back: the counts, the summary as data, and the summary as text."""

from __future__ import annotations

import dataclasses

import pytest

from penguins.traffic.settings import TrafficSettings
from penguins.traffic.summary import Stats, describe_mode, format_summary, traffic_mode

# What a run with the default settings, and a seed, reports as its mode.
MODE = {
    "drift": False,
    "invalid_share": 0.0,
    "batch_share": 0.2,
    "batch_size": 20,
    "feedback_share": 0.5,
    "rate": 20.0,
    "concurrency": 4,
    "seed": 7,
}


def filled() -> Stats:
    """Return counts of a small run with every kind of answer."""
    stats = Stats()
    for i in range(10):
        stats.answer("POST", "/predict", 200, 0.010 * (i + 1))
    stats.answer("POST", "/predict", 422, 0.002)
    stats.answer("POST", "/predict/batch", 200, 0.050)
    stats.answer("POST", "/feedback", 200, 0.004)
    stats.answer("POST", "/feedback", 404, 0.003)
    stats.failure(ConnectionError("refused"))
    for _ in range(9):
        stats.sent("single", 200, 200)
    stats.sent("batch", 200, 200)
    stats.sent("missing_field", 422, 422)
    stats.sent("bad_json", 422, 400)  # answered unlike its kind
    stats.sent("not_json", None, 415)  # no answer: not counted as unexpected
    stats.checked(["Adelie"] * 9 + ["Gentoo"] * 3, ["Adelie"] * 11 + ["Chinstrap"])
    stats.malformed()
    return stats


def test_the_summary_counts_every_answer_by_route_and_status():
    summary = filled().summary("http://api:1", 2.345, MODE)
    assert (summary["url"], summary["seconds"]) == ("http://api:1", 2.35)
    assert summary["requests_by_kind"] == {
        "single": 9,
        "batch": 1,
        "missing_field": 1,
        "bad_json": 1,
        "not_json": 1,
    }
    assert summary["responses_by_status"] == {"200": 12, "404": 1, "422": 1}
    assert summary["responses"] == {
        "POST /feedback 200": 1,
        "POST /feedback 404": 1,
        "POST /predict 200": 10,
        "POST /predict 422": 1,
        "POST /predict/batch 200": 1,
    }
    assert summary["feedback_calls"] == 2
    assert summary["feedback_by_status"] == {"200": 1, "404": 1}
    assert summary["invalid_answered_unexpectedly"] == {"bad_json": 1}
    assert summary["malformed_answers"] == 1
    assert summary["transport_errors"] == {"ConnectionError": 1}


def test_accuracy_and_latency_percentiles():
    summary = filled().summary("http://api:1", 1.0, MODE)
    assert summary["predictions_checked"] == 12
    assert summary["accuracy"] == pytest.approx(9 / 12, abs=1e-4)
    predict = summary["latency"]["POST /predict"]
    assert predict["count"] == 11
    assert predict["p50_ms"] == pytest.approx(50.0)
    assert predict["p50_ms"] <= predict["p95_ms"] <= predict["p99_ms"] <= 100.0
    assert list(summary["latency"]) == sorted(summary["latency"])


def test_no_prediction_answered_means_no_accuracy():
    assert Stats().summary("http://api:1", 0.0, MODE)["accuracy"] is None


def test_the_summary_reads_as_text():
    text = format_summary(filled().summary("http://api:1", 2.0, MODE))
    assert text.splitlines() == [
        "",
        "Sent 13 prediction requests to http://api:1 in 2.0 s: 9 single, 1 batch, "
        "3 invalid (bad_json 1, missing_field 1, not_json 1)",
        "Mode: no drift, invalid share 0, batch share 0.2 (2 to 20 samples), feedback share 0.5, "
        "20 requests/s, concurrency 4, seed 7",
        "Responses by status: 200: 12, 404: 1, 422: 1",
        "  POST /feedback 200: 1",
        "  POST /feedback 404: 1",
        "  POST /predict 200: 10",
        "  POST /predict 422: 1",
        "  POST /predict/batch 200: 1",
        "Latency (ms)            count      p50      p95      p99",
        "  POST /feedback            2      3.5      4.0      4.0",
        "  POST /predict            11     50.0     95.0     99.0",
        "  POST /predict/batch       1     50.0     50.0     50.0",
        "Accuracy against the true species: 0.750 (12 predictions)",
        "Feedback calls: 2",
        "Invalid requests answered unlike the contract: {'bad_json': 1}",
        "200 answers not shaped as the contract says: 1",
        "Requests with no answer: {'ConnectionError': 1}",
    ]


def test_a_clean_run_prints_no_problem_lines():
    stats = Stats()
    stats.answer("POST", "/predict", 200, 0.01)
    stats.sent("single", 200, 200)
    lines = format_summary(stats.summary("http://api:1", 1.0, MODE)).splitlines()
    sent = "Sent 1 prediction requests to http://api:1 in 1.0 s: 1 single, 0 batch, 0 invalid"
    assert lines[1] == sent
    assert lines[-2:] == [
        "Accuracy against the true species: no predictions answered",
        "Feedback calls: 0",
    ]


def test_the_mode_is_the_settings_that_shape_the_traffic(settings_of):
    assert traffic_mode(settings_of("--seed", "7")) == MODE
    drifted = settings_of("--drift", "--invalid-share", "0.3", "--rate", "0", "--url", "http://x:1")
    mode = traffic_mode(drifted)
    assert (mode["drift"], mode["invalid_share"], mode["rate"], mode["seed"]) == (
        True,
        0.3,
        0.0,
        None,
    )
    assert set(mode) < {f.name for f in dataclasses.fields(TrafficSettings)}
    assert filled().summary("http://api:1", 1.0, mode)["mode"] == mode


def test_the_mode_reads_as_words():
    drifted = dict(MODE, drift=True, invalid_share=0.3, rate=0.0, seed=None)
    assert describe_mode(drifted) == (
        "drift (body_mass_g +1000, flipper_length_mm +20), invalid share 0.3, "
        "batch share 0.2 (2 to 20 samples), feedback share 0.5, as fast as answered, "
        "concurrency 4, seed random"
    )
