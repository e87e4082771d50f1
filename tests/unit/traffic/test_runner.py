"""The runner and inference.main against a stand-in API: what is sent, counted and printed."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import inference
from penguins.traffic.runner import ApiUnreachable, Outcome, send_traffic
from tests.support.processes import free_port
from tests.unit.traffic.fake_api import FakeApi

QUICK = ("--rate", "0", "--no-progress", "--seed", "1")


def test_the_summary_matches_what_the_api_answered(fake_api, data, settings_of):
    settings = settings_of(
        "--url", fake_api.url, "--count", "80", "--batch-share", "0.3", "--invalid-share", "0.3",
        "--feedback-share", "0.5", *QUICK,
    )  # fmt: skip
    outcome = send_traffic(settings, data)
    summary = outcome.summary
    assert summary["responses"] == dict(sorted(fake_api.answered.items()))
    assert sum(summary["requests_by_kind"].values()) == 80
    assert summary["invalid_answered_unexpectedly"] == {}
    assert summary["predictions_checked"] == len(fake_api.ids)
    assert (
        summary["feedback_calls"] == summary["feedback_by_status"]["200"] == len(fake_api.feedback)
    )
    assert 0.3 * len(fake_api.ids) < len(fake_api.feedback) < 0.7 * len(fake_api.ids)
    assert summary["malformed_answers"] == 0 and summary["transport_errors"] == {}
    assert (outcome.interrupted, outcome.exit_code) == (False, 0)


def test_accuracy_is_against_the_species_each_sample_was_drawn_from(fake_api, data, settings_of):
    settings = settings_of("--url", fake_api.url, "--count", "60", "--feedback-share", "1", *QUICK)
    summary = send_traffic(settings, data).summary
    truths = Counter(fake_api.feedback)  # every true species came back as feedback
    assert summary["predictions_checked"] == truths.total() == len(fake_api.ids)
    assert summary["accuracy"] == pytest.approx(truths["Adelie"] / truths.total(), abs=1e-4)


@pytest.mark.parametrize("fake_api", ["malformed"], indirect=True)
def test_answers_without_the_documented_shape_are_counted(fake_api, data, settings_of):
    settings = settings_of("--url", fake_api.url, "--count", "20", "--batch-share", "0.5", *QUICK)
    summary = send_traffic(settings, data).summary
    assert summary["malformed_answers"] == 20
    assert (summary["predictions_checked"], summary["accuracy"]) == (0, None)
    assert summary["feedback_calls"] == 0


@pytest.mark.parametrize("fake_api", ["refuse_all"], indirect=True)
def test_invalid_requests_answered_unlike_their_kind_are_counted(fake_api, data, settings_of):
    settings = settings_of("--url", fake_api.url, "--count", "300", "--invalid-share", "1", *QUICK)
    summary = send_traffic(settings, data).summary
    kinds = summary["requests_by_kind"]
    # Everything is refused with 422: only the kinds that expect 400 or 415 are wrong.
    assert summary["invalid_answered_unexpectedly"] == {
        kind: kinds[kind] for kind in ("bad_json", "not_json")
    }


def test_the_same_seed_sends_the_same_requests_from_several_threads(data, settings_of):
    def sent(seed: str) -> tuple[Counter, list[str]]:
        """Send a seeded run to a fresh stand-in; return what it answered, and the feedback."""
        api = FakeApi()
        try:
            argv = ("--url", api.url, "--count", "60", "--concurrency", "8", "--seed", seed)
            send_traffic(settings_of(*argv, "--rate", "0", "--no-progress"), data)
        finally:
            api.close()
        return api.answered, sorted(api.feedback)

    first = sent("1")
    assert sent("1") == first
    assert sent("2") != first


@pytest.mark.parametrize("fake_api", ["drop_feedback"], indirect=True)
def test_requests_without_an_answer_fail_the_run(fake_api, data, settings_of):
    settings = settings_of("--url", fake_api.url, "--count", "10", "--feedback-share", "1", *QUICK)
    outcome = send_traffic(settings, data)
    assert outcome.summary["transport_errors"] == {"ConnectionError": len(fake_api.ids)}
    assert outcome.exit_code == 1


@pytest.mark.parametrize("fake_api", ["unhealthy"], indirect=True)
def test_an_unhealthy_api_is_warned_about_and_sent_to_anyway(fake_api, data, settings_of, capsys):
    settings = settings_of("--url", fake_api.url, "--count", "5", *QUICK)
    summary = send_traffic(settings, data).summary
    assert f"inference: warning: {fake_api.url}/health answered 503; sending anyway" in (
        capsys.readouterr().err
    )
    assert summary["responses"]["GET /health 503"] == 1
    assert sum(summary["requests_by_kind"].values()) == 5


def test_an_unreachable_api_is_an_error_naming_the_url(data, settings_of):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ApiUnreachable) as error:
        send_traffic(settings_of("--url", url, "--count", "5", *QUICK), data)
    assert str(error.value) == (
        f"cannot reach the API at {url}: ConnectionError; "
        "start it with make serve (python ml_serving.py) or check --url"
    )


def test_duration_sends_at_the_rate_until_the_time_is_up(fake_api, data, settings_of):
    settings = settings_of(
        "--url", fake_api.url, "--duration", "1", "--rate", "20", "--no-progress", "--seed", "2"
    )
    outcome = send_traffic(settings, data)
    sent = sum(outcome.summary["requests_by_kind"].values())
    assert 10 <= sent <= 21  # about 1 s at 20 per second
    assert outcome.summary["seconds"] >= 1
    assert outcome.exit_code == 0


def test_main_prints_the_summary_and_writes_it_as_json(fake_api, tmp_path, capsys):
    path = tmp_path / "summary.json"
    argv = ["--url", fake_api.url, "--count", "30", "--summary-json", str(path), *QUICK]
    assert inference.main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(path.read_text())
    assert summary["responses"] == dict(sorted(fake_api.answered.items()))
    assert f"Sent 30 prediction requests to {fake_api.url} in " in out
    assert "Latency (ms)" in out and f"Feedback calls: {summary['feedback_calls']}" in out
    assert summary["mode"]["drift"] is False
    assert "\nMode: no drift, invalid share 0, " in out


def test_main_names_the_mode_in_the_text_and_the_json(fake_api, tmp_path, capsys):
    path = tmp_path / "summary.json"
    argv = ["--url", fake_api.url, "--count", "10", "--drift", "--invalid-share", "0.3"]
    assert inference.main([*argv, "--summary-json", str(path), *QUICK]) == 0
    mode = json.loads(path.read_text())["mode"]
    assert (mode["drift"], mode["invalid_share"], mode["seed"]) == (True, 0.3, 1)
    out = capsys.readouterr().out
    assert "\nMode: drift (body_mass_g +1000, flipper_length_mm +20), invalid share 0.3, " in out


@pytest.mark.parametrize("fake_api", ["drop_feedback"], indirect=True)
def test_main_says_when_requests_got_no_answer(fake_api, capsys):
    argv = ["--url", fake_api.url, "--count", "5", "--feedback-share", "1", *QUICK]
    assert inference.main(argv) == 1
    captured = capsys.readouterr()
    assert "Requests with no answer: {'ConnectionError': " in captured.out
    assert captured.err.splitlines()[-1] == "inference: some requests got no answer from the API"


def test_main_refuses_data_it_cannot_read(tmp_path, capsys):
    missing = tmp_path / "none.csv"
    assert inference.main(["--data", str(missing), "--url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == f"inference: data file not found: {missing}\n"


@pytest.mark.parametrize(
    ("errors", "interrupted", "until_stopped", "code"),
    [
        ({}, False, False, 0),
        ({"ConnectionError": 1}, False, False, 1),
        ({"ConnectionError": 1}, True, True, 1),
        ({}, True, False, 130),
        ({}, True, True, 0),
    ],
)
def test_exit_codes(errors, interrupted, until_stopped, code):
    outcome = Outcome({"transport_errors": errors}, interrupted, until_stopped)
    assert outcome.exit_code == code
