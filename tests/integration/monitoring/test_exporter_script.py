"""``python prometheus_exporter.py`` started as users start it and scraped over HTTP."""

from __future__ import annotations

import http.client
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

from penguins.config import PROJECT_DIR, sqlite_uri
from penguins.monitoring.exporter import INDEX_TEXT, NOT_FOUND_TEXT
from penguins.predlog import open_log
from penguins.traffic.inputs import sample_inputs
from tests.support import ManagedProcess, free_port
from tests.support.monitoring import log_inputs
from tests.support.stores import store_client


@contextmanager
def exporter(log_dir: Path, *args: str) -> Iterator[tuple[str, ManagedProcess]]:
    """Run the exporter on a free port; yield (metrics URL, process); stop it afterwards."""
    port = free_port()
    argv = ("--host", "127.0.0.1", "--port", str(port), *args)
    with ManagedProcess.python(
        "prometheus_exporter.py", *argv, log_path=log_dir / f"exporter-{port}.log"
    ) as proc:
        url = f"http://127.0.0.1:{port}/metrics"
        proc.wait_for_http(url, timeout=60)
        yield url, proc


def run_script(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the exporter to its end (one that fails at start); return it, output captured."""
    return subprocess.run(
        [sys.executable, "prometheus_exporter.py", *argv],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def samples(url: str) -> dict[tuple[str, tuple], float]:
    """Scrape a metrics URL; return {(name, sorted labels): value}."""
    text = requests.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_help_exits_zero():
    result = run_script("--help")
    assert result.returncode == 0
    assert "--accuracy-window" in result.stdout and "PROMETHEUS_PORT" in result.stdout


def test_without_a_tracking_store_it_serves_system_metrics_and_says_why(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    stores = ("--prediction-log-uri", sqlite_uri(tmp_path / "predictions.db"),
              "--tracking-uri", sqlite_uri(db))  # fmt: skip
    with exporter(tmp_path, *stores) as (url, proc):
        values = samples(url)
        for name in ("system_cpu_usage_percent", "system_memory_usage_percent",
                     "system_disk_usage_percent"):  # fmt: skip
            assert 0 <= values[(name, ())] <= 100
        assert not any(name == "ml_feature_drift_psi" for name, _ in values)
        proc.send(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        log = proc.output()
    assert f"no tracking store at {db}" in log
    assert not db.exists()


def test_drift_and_live_accuracy_of_a_trained_champion_over_http(
    tmp_path: Path, trained_store, data
):
    tracking_uri = trained_store.tracking_uri
    champion = store_client(tracking_uri).get_model_version_by_alias(
        trained_store.model_name, trained_store.alias
    )
    version, run_id = str(champion.version), champion.run_id
    log_uri = sqlite_uri(tmp_path / "predictions.db")
    log = open_log(log_uri)
    inputs = sample_inputs(data, 500, np.random.default_rng(5), drift=True)
    ids = log_inputs(log, inputs, version=version)
    for prediction_id in ids[:30]:
        log.attach_feedback(prediction_id, "Adelie")
    log.close()
    expected_accuracy = float(np.mean(inputs["species"].iloc[:30] == "Adelie"))

    argv = ("--prediction-log-uri", log_uri, "--tracking-uri", tracking_uri)
    with exporter(tmp_path, *argv) as (url, _):
        values = samples(url)
    assert values[("ml_drift_detected", ())] == 1
    assert values[("ml_feature_drift_psi", (("feature", "body_mass_g"),))] > 0.2
    assert values[("ml_feature_drift_psi", (("feature", "bill_length_mm"),))] < 0.1
    info = (("run_id", run_id), ("version", version))
    assert values[("ml_drift_reference_info", info)] == 1
    labels = (("model", "random_forest"), ("version", version))
    assert values[("ml_model_live_accuracy", labels)] == pytest.approx(expected_accuracy)


def test_a_port_in_use_fails_with_one_clear_line(tmp_path: Path):
    stores = ("--prediction-log-uri", sqlite_uri(tmp_path / "p.db"),
              "--tracking-uri", sqlite_uri(tmp_path / "mlflow.db"))  # fmt: skip
    with exporter(tmp_path, *stores) as (url, _):
        port = url.split(":")[2].split("/")[0]
        result = run_script("--host", "127.0.0.1", "--port", port, *stores)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        (["--prediction-log-uri", "predictions.db"], {}, 1, "must be sqlite:///PATH or postgres"),
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
    result = run_script(*argv, env={**os.environ, **env})
    assert result.returncode == code
    assert message in result.stderr


def raw_get(url: str, path: str, method: str = "GET") -> tuple[int, str, str]:
    """Send ``path`` exactly as written (no dot-segment clean-up); return status, type, body."""
    host, port = url.split("/")[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


def test_only_metrics_scrapes_and_other_paths_answer_404(tmp_path: Path):
    stores = ("--prediction-log-uri", sqlite_uri(tmp_path / "p.db"),
              "--tracking-uri", sqlite_uri(tmp_path / "mlflow.db"))  # fmt: skip
    with exporter(tmp_path, *stores) as (url, _):
        status, _, body = raw_get(url, "/metrics")
        assert status == 200 and "system_memory_usage_percent" in body
        status, content_type, body = raw_get(url, "/")
        assert (status, body) == (200, INDEX_TEXT) and content_type.startswith("text/plain")
        for path in ("/../../etc/passwd", "/metricsx", "/metrics/", "/favicon.ico", "/api"):
            status, content_type, body = raw_get(url, path)
            assert (status, body) == (404, NOT_FOUND_TEXT), path
            assert content_type.startswith("text/plain"), path
        assert raw_get(url, "/", method="POST")[0] == 405


def test_the_first_scrape_measures_cpu_under_load(tmp_path: Path):
    stores = ("--prediction-log-uri", sqlite_uri(tmp_path / "p.db"),
              "--tracking-uri", sqlite_uri(tmp_path / "mlflow.db"))  # fmt: skip
    burn = "print('burning', flush=True)\nwhile True:\n    pass\n"
    burners: list[ManagedProcess] = []
    try:
        for n in range(os.cpu_count() or 1):
            log_path = tmp_path / f"burn-{n}.log"
            burners.append(ManagedProcess([sys.executable, "-c", burn], log_path, name=f"burn-{n}"))
        for burner in burners:
            burner.wait_for_log("burning")
        port = free_port()
        argv = ("--host", "127.0.0.1", "--port", str(port), *stores)
        with ManagedProcess.python(
            "prometheus_exporter.py", *argv, log_path=tmp_path / "exporter.log"
        ) as proc:
            proc.wait_for_log("serving metrics on")  # no scrape before the one measured
            cpu = samples(f"http://127.0.0.1:{port}/metrics")[("system_cpu_usage_percent", ())]
    finally:
        for burner in burners:
            burner.stop(timeout=5)
    # Every CPU runs a busy loop; the old first scrape said 0.0.
    assert cpu > 50, cpu
