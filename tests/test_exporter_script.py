"""``python prometheus_exporter.py`` started as users start it and scraped over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from penguins.config import DEFAULT_DATA_PATH, PROJECT_DIR
from penguins.features import load_dataset
from penguins.predlog import PredictionLog
from penguins.traffic import sample_inputs
from tests.monitoring_support import log_inputs
from tests.support import free_port, wait_for_http

pytestmark = pytest.mark.integration


@contextmanager
def exporter(*args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run the exporter on a free port; yield (metrics URL, process); stop it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "prometheus_exporter.py", "--host", "127.0.0.1", "--port", str(port),
         *args],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_http(url, timeout=60)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def samples(url: str) -> dict[tuple[str, tuple], float]:
    """Scrape a metrics URL; return {(name, sorted labels): value}."""
    text = requests.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_help_exits_zero():
    result = subprocess.run(
        [sys.executable, "prometheus_exporter.py", "--help"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--accuracy-window" in result.stdout and "PROMETHEUS_PORT" in result.stdout


def test_without_a_tracking_store_it_serves_system_metrics_and_says_why(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    with exporter(
        "--prediction-log-uri", f"sqlite:///{tmp_path / 'predictions.db'}",
        "--tracking-uri", f"sqlite:///{db}",
    ) as (url, proc):  # fmt: skip
        values = samples(url)
        for name in ("system_cpu_usage_percent", "system_memory_usage_percent",
                     "system_disk_usage_percent"):  # fmt: skip
            assert 0 <= values[(name, ())] <= 100
        assert not any(name == "ml_feature_drift_psi" for name, _ in values)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        log = proc.stderr.read()
    assert f"no tracking store yet at {db}" in log
    assert not db.exists()


def test_drift_and_live_accuracy_of_a_trained_champion_over_http(tmp_path: Path, trained_store):
    from mlflow import MlflowClient

    data = load_dataset(DEFAULT_DATA_PATH)
    tracking_uri = trained_store.tracking_uri
    champion = MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
        trained_store.model_name, trained_store.alias
    )
    version, run_id = str(champion.version), champion.run_id
    log_uri = f"sqlite:///{tmp_path / 'predictions.db'}"
    log = PredictionLog(log_uri)
    inputs = sample_inputs(data, 500, np.random.default_rng(5), drift=True)
    ids = log_inputs(log, inputs, version=version)
    for prediction_id in ids[:30]:
        log.attach_feedback(prediction_id, "Adelie")
    log.close()
    expected_accuracy = float(np.mean(inputs["species"].iloc[:30] == "Adelie"))

    with exporter("--prediction-log-uri", log_uri, "--tracking-uri", tracking_uri) as (url, _):
        values = samples(url)
    assert values[("ml_drift_detected", ())] == 1
    assert values[("ml_feature_drift_psi", (("feature", "body_mass_g"),))] > 0.2
    assert values[("ml_feature_drift_psi", (("feature", "bill_length_mm"),))] < 0.1
    info = (("run_id", run_id), ("version", version))
    assert values[("ml_drift_reference_info", info)] == 1
    labels = (("model", "random_forest"), ("version", version))
    assert values[("ml_model_live_accuracy", labels)] == pytest.approx(expected_accuracy)


def test_a_port_in_use_fails_with_one_clear_line(tmp_path: Path):
    stores = ("--prediction-log-uri", f"sqlite:///{tmp_path / 'p.db'}",
              "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    with exporter(*stores) as (url, _):
        port = url.split(":")[2].split("/")[0]
        result = subprocess.run(
            [sys.executable, "prometheus_exporter.py", "--host", "127.0.0.1", "--port", port,
             *stores],
            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        (["--prediction-log-uri", "predictions.db"], {}, 1, "must look like sqlite:///PATH"),
        (
            ["--prediction-log-uri", "sqlite:////proc/no/such.db"],
            {},
            1,
            "cannot open the prediction log",
        ),
        ([], {"PROMETHEUS_PORT": "eighty"}, 2, "PROMETHEUS_PORT must be an integer"),
        (["--drift-window", "0"], {}, 2, "--drift-window must be at least 1"),
    ],
)
def test_bad_settings_fail_with_a_clear_line(argv, env, code, message):
    result = subprocess.run(
        [sys.executable, "prometheus_exporter.py", *argv],
        cwd=PROJECT_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == code
    assert message in result.stderr
