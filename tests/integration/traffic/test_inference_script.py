"""python inference.py as a user runs it: against nothing, and against the real API.

The exporter then reads the log the API wrote: the traffic's drift and feedback show
in its metrics.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.predlog import logged_ids, logged_row
from tests.support.processes import PROJECT_DIR, ManagedProcess, free_port

INTERRUPTED = "inference: interrupted; waiting for requests in flight"


def run_inference(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run inference.py to its end; return what it printed to each stream and its exit code."""
    return subprocess.run(
        [sys.executable, "inference.py", *argv],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_traffic(url: str, tmp_path: Path, *argv: str) -> dict:
    """Run inference.py as a user would; return its JSON summary."""
    summary = tmp_path / "summary.json"
    result = run_inference("--url", url, "--summary-json", str(summary), "--no-progress", *argv)
    assert result.returncode == 0, result.stderr
    assert "Latency (ms)" in result.stdout and "Feedback calls" in result.stdout
    return json.loads(summary.read_text())


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Return every sample of a /metrics page as {(name, labels): value}."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(url: str) -> Counter:
    """Return the API's ml_requests_total as {"METHOD /route STATUS": count}."""
    counted: Counter = Counter()
    for (name, labels), value in scrape(url).items():
        labels = dict(labels)
        if name == "ml_requests_total" and labels["endpoint"] != "/metrics":
            counted[f"{labels['method']} {labels['endpoint']} {labels['status']}"] += value
    return counted


def labelled_by_version(log_uri: str) -> dict[tuple[str, str], tuple[int, int]]:
    """Return {(algorithm, model_version): (labelled, correct)} over the whole log."""
    counts: dict[tuple[str, str], list[int]] = {}
    for prediction_id in logged_ids(log_uri):
        row = logged_row(log_uri, prediction_id)
        if row["actual_species"] is None:
            continue
        tally = counts.setdefault((row["algorithm"], row["model_version"]), [0, 0])
        tally[0] += 1
        tally[1] += row["predicted_species"] == row["actual_species"]
    return {key: (labelled, correct) for key, (labelled, correct) in counts.items()}


def test_an_unreachable_api_exits_non_zero_with_one_line():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_inference("--url", url, "--count", "5", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"inference: cannot reach the API at {url}: ConnectionError; "
        "start it with make serve (python ml_serving.py) or check --url"
    ]
    assert result.stdout == ""


def test_the_summary_matches_what_the_api_counted(api, tmp_path):
    before = requests_counted(api.url)
    summary = run_traffic(
        api.url, tmp_path, "--duration", "4", "--rate", "25", "--concurrency", "3",
        "--batch-share", "0.3", "--feedback-share", "0.5", "--invalid-share", "0.15",
        "--seed", "1",
    )  # fmt: skip
    after = requests_counted(api.url)
    counted = {key: n for key, n in (after - before).items() if n}
    assert counted == summary["responses"]
    assert summary["transport_errors"] == {} and summary["malformed_answers"] == 0
    # Every invalid request got the status the API documents for its kind.
    assert summary["invalid_answered_unexpectedly"] == {}
    assert summary["feedback_calls"] == summary["feedback_by_status"].get("200", 0) > 0
    assert summary["accuracy"] > 0.9


def test_the_exporter_reads_the_log_the_api_wrote(api, tmp_path, trained_store):
    summary = run_traffic(
        api.url, tmp_path, "--count", "40", "--rate", "0", "--batch-share", "1",
        "--batch-size", "20", "--feedback-share", "0.3", "--drift", "--seed", "2",
    )  # fmt: skip
    assert summary["mode"]["drift"] is True
    drifted = summary["predictions_checked"]
    port = free_port()
    argv = (
        "--host", "127.0.0.1", "--port", str(port), "--prediction-log-uri", api.log_uri,
        "--tracking-uri", trained_store.tracking_uri, "--model-name", trained_store.model_name,
        "--alias", trained_store.alias, "--drift-window", str(drifted),
        "--drift-min-samples", str(drifted), "--accuracy-window", "100000",
    )  # fmt: skip
    log_path = tmp_path / "exporter.log"
    with ManagedProcess.python("prometheus_exporter.py", *argv, log_path=log_path) as exporter:
        url = f"http://127.0.0.1:{port}"
        exporter.wait_for_http(f"{url}/metrics", timeout=60)
        metrics = scrape(url)

    def value(name: str, **labels: str) -> float | None:
        """Return the exporter's value of one series, None when it is absent."""
        return metrics.get((name, frozenset(labels.items())))

    assert value("ml_drift_samples") == drifted
    assert value("ml_drift_detected") == 1
    for feature in ("body_mass_g", "flipper_length_mm"):
        assert value("ml_feature_drift_psi", feature=feature) > 0.2

    labelled = labelled_by_version(api.log_uri)
    assert labelled, "the API logged no feedback"
    for (algorithm, version), (count, correct) in labelled.items():
        labels = {"model": algorithm, "version": version}
        assert value("ml_model_live_accuracy_labels", **labels) == count
        assert value("ml_model_live_accuracy", **labels) == pytest.approx(correct / count)
    assert sum(count for count, _ in labelled.values()) >= summary["feedback_calls"]


def test_duration_zero_runs_until_ctrl_c_then_summarises(api, tmp_path):
    argv = ("--url", api.url, "--duration", "0", "--rate", "10", "--no-progress")
    with ManagedProcess.python("inference.py", *argv, log_path=tmp_path / "inference.log") as run:
        time.sleep(3)
        assert run.alive(), "inference.py --duration 0 stopped by itself"
        run.send(signal.SIGINT)
        code = run.wait(timeout=30)
        out = run.output()
    assert code == 0, out
    assert INTERRUPTED in out.splitlines()
    sent = int(out.split("Sent ")[1].split()[0])
    assert 10 <= sent <= 60  # about 3 s at 10 per second


def test_ctrl_c_ends_a_run_started_with_sigint_ignored(api, tmp_path):
    # A shell starts a background job with SIGINT ignored, and the child inherits that.
    shell = ("sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable, "inference.py")
    argv = (*shell, "--url", api.url, "--duration", "0", "--rate", "10", "--drift")
    log_path = tmp_path / "inference.log"
    with ManagedProcess(argv, log_path=log_path, name="inference.py") as run:
        run.wait_for_log("requests:")  # the progress bar: past start-up, sending
        run.send(signal.SIGINT)
        code = run.wait(timeout=30)
        out = run.output()
    assert code == 0, out
    assert INTERRUPTED in out
    assert "\nSent " in out and "\nMode: drift (body_mass_g +1000, flipper_length_mm +20), " in out
