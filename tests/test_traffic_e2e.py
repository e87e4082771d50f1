"""inference.py against the real API, and the exporter over the log the API wrote."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from penguins.exporter import MonitoringCollector, MonitorSettings
from penguins.predlog import PredictionLog
from penguins.reference import load_reference
from tests.support import free_port, wait_for_http

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def api(trained_store, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Serve the trained champion with ``python ml_serving.py``; yield (URL, log URI)."""
    if not (PROJECT_DIR / "ml_serving.py").exists():
        pytest.skip("ml_serving.py is not on this branch yet")
    root = tmp_path_factory.mktemp("api")
    log_uri = f"sqlite:///{root / 'predictions.db'}"
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
        "PREDICTION_LOG_URI": log_uri,
    }
    env.pop("MODEL_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "ml_serving.py", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_http(f"{url}/health", timeout=90)
        except TimeoutError:
            proc.terminate()
            pytest.fail(f"the API did not become healthy: {proc.communicate(timeout=30)[1]}")
        yield url, log_uri
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()


def requests_counted(url: str) -> Counter:
    """Return the API's ml_requests_total as {"METHOD /route STATUS": count}."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    counted: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ml_requests_total" and sample.labels["endpoint"] != "/metrics":
                key = f"{sample.labels['method']} {sample.labels['endpoint']} "
                counted[key + sample.labels["status"]] += sample.value
    return counted


def run_traffic(url: str, tmp_path: Path, *argv: str) -> dict:
    """Run inference.py as a user would; return its JSON summary."""
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "inference.py", "--url", url, "--summary-json", str(summary),
         "--no-progress", *argv],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Latency (ms)" in result.stdout and "Feedback calls" in result.stdout
    return json.loads(summary.read_text())


def test_the_summary_matches_what_the_api_counted(api, tmp_path):
    url, _ = api
    before = requests_counted(url)
    summary = run_traffic(
        url, tmp_path, "--duration", "4", "--rate", "25", "--concurrency", "3",
        "--batch-share", "0.3", "--feedback-share", "0.5", "--invalid-share", "0.15",
        "--seed", "1",
    )  # fmt: skip
    after = requests_counted(url)
    counted = {key: n for key, n in (after - before).items() if n}
    assert counted == summary["responses"]
    assert summary["transport_errors"] == {} and summary["malformed_answers"] == 0
    # Every invalid request got the status CONTRACT.md gives its kind.
    assert summary["invalid_answered_unexpectedly"] == {}
    assert summary["feedback_calls"] == summary["feedback_by_status"].get("200", 0) > 0
    assert summary["accuracy"] > 0.9


def test_the_exporter_reads_the_log_the_api_wrote(api, tmp_path, trained_store):
    url, log_uri = api
    reference = load_reference(trained_store.tracking_uri, trained_store.model_name, "champion")
    summary = run_traffic(
        url, tmp_path, "--count", "40", "--rate", "0", "--batch-share", "1",
        "--batch-size", "20", "--feedback-share", "0.3", "--drift", "--seed", "2",
    )  # fmt: skip
    drifted = summary["predictions_checked"]
    log = PredictionLog(log_uri)
    try:
        registry = CollectorRegistry()
        settings = MonitorSettings(drift_window=drifted, accuracy_window=100_000)
        registry.register(MonitoringCollector(log, lambda: reference, settings))
        assert registry.get_sample_value("ml_drift_samples") == drifted
        assert registry.get_sample_value("ml_drift_detected") == 1
        for feature in ("body_mass_g", "flipper_length_mm"):
            assert registry.get_sample_value("ml_feature_drift_psi", {"feature": feature}) > 0.2

        with closing(sqlite3.connect(log.path)) as conn:
            rows = conn.execute(
                "SELECT model_name, model_version, COUNT(*), SUM(predicted_species = "
                "actual_species) FROM predictions WHERE actual_species IS NOT NULL "
                "GROUP BY model_name, model_version"
            ).fetchall()
        assert rows, "the API logged no feedback"
        for model, version, labelled, correct in rows:
            labels = {"model": model, "version": version}
            assert registry.get_sample_value("ml_model_live_accuracy_labels", labels) == labelled
            assert registry.get_sample_value("ml_model_live_accuracy", labels) == pytest.approx(
                correct / labelled
            )
        assert sum(r[2] for r in rows) >= summary["feedback_calls"]
    finally:
        log.close()


def test_duration_zero_runs_until_ctrl_c_then_summarises(api):
    url, _ = api
    proc = subprocess.Popen(
        [sys.executable, "inference.py", "--url", url, "--duration", "0", "--rate", "10",
         "--no-progress"],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)
        assert proc.poll() is None, "inference.py --duration 0 stopped by itself"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "interrupted" in err
    sent = int(out.split("Sent ")[1].split()[0])
    assert 10 <= sent <= 60  # about 3 s at 10 per second
