"""Fixtures of the prediction API: apps on the session store, stores to swap models in, servers.

conftest.py imports the fixtures; tests import the helpers and sample bodies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from penguins.config import PROJECT_DIR
from tests.support import free_port, wait_for_http

# One Adelie from the data set, in both spellings the API accepts.
SAMPLE = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
    "island_encoded": 0,
    "sex_encoded": 1,
}
SAMPLE_BY_NAME = {
    **{k: v for k, v in SAMPLE.items() if not k.endswith("_encoded")},
    "island": "torgersen",
    "sex": "MALE",
}
GENTOO = {
    "bill_length_mm": 46.1,
    "bill_depth_mm": 13.2,
    "flipper_length_mm": 211.0,
    "body_mass_g": 4500.0,
    "island": "Biscoe",
    "sex": "female",
}
CHINSTRAP = {
    "bill_length_mm": 46.5,
    "bill_depth_mm": 17.9,
    "flipper_length_mm": 192.0,
    "body_mass_g": 3500.0,
    "island": "Dream",
    "sex": "female",
}


# ---- stores ------------------------------------------------------------------------


def sqlite_uri(path: Path) -> str:
    """Return the sqlite:/// URI of a file."""
    return f"sqlite:///{path}"


def store_client(tracking_uri: str):
    """Return a client of a tracking store and its registry."""
    from mlflow import MlflowClient  # heavy: only tests that use a store pay for it

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def champion_source(tracking_uri: str, name: str = "penguins-classifier") -> dict:
    """Return the champion's artifact location, tags and run: enough to register it again."""
    client = store_client(tracking_uri)
    version = client.get_model_version_by_alias(name, "champion")
    return {
        "source": client.get_model_version_download_uri(name, version.version),
        "tags": dict(version.tags),
        "run_id": version.run_id,
    }


def register_version(
    tracking_uri: str,
    source: str,
    tags: dict | None = None,
    run_id: str | None = None,
    name: str = "penguins-classifier",
    promote: bool = True,
) -> str:
    """Register a model version from an artifact location, move the champion alias to it."""
    client = store_client(tracking_uri)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags or {})
    version = version.version
    if promote:
        client.set_registered_model_alias(name, "champion", version)
    return str(version)


@pytest.fixture
def store_copy(trained_store, tmp_path) -> str:
    """Return the tracking URI of a private copy of the session store, free to change.

    The copy's registry points at the session store's artifacts, which stay read-only.
    """
    root = tmp_path / "store-copy"
    root.mkdir()
    shutil.copy(trained_store.root / "mlflow.db", root / "mlflow.db")
    return sqlite_uri(root / "mlflow.db")


@pytest.fixture
def empty_store(tmp_path) -> str:
    """Return the tracking URI of a store with nothing in it yet."""
    root = tmp_path / "empty-store"
    root.mkdir()
    return sqlite_uri(root / "mlflow.db")


# ---- apps in this process ----------------------------------------------------------


@pytest.fixture
def make_app(trained_store, tmp_path) -> Iterator:
    """Return a factory of apps on the session store with a fresh prediction log each."""
    from penguins.api import create_app  # heavy: imports MLflow

    apps = []

    def make(**overrides):
        """Build an app; keyword arguments override its settings."""
        config = {
            "TESTING": True,
            "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
            "MODEL_URI": "",
            "PREDICTION_LOG_URI": sqlite_uri(tmp_path / f"predictions-{len(apps)}.db"),
            "MODEL_REFRESH_SECONDS": 0,  # tests call manager.refresh() themselves
            "METRICS_REGISTRY": CollectorRegistry(),
            **overrides,
        }
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["penguins"].close()


@pytest.fixture
def app(make_app):
    """Return an app serving the session store's champion."""
    return make_app()


@pytest.fixture
def client(app):
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def serving_state(app):
    """Return the app's serving state: manager, prediction log, metrics."""
    return app.extensions["penguins"]


@pytest.fixture
def metrics_registry(serving_state) -> CollectorRegistry:
    """Return the app's own metrics registry."""
    return serving_state.metrics.registry


# ---- real servers ------------------------------------------------------------------


class ServingProcess:
    """``python ml_serving.py`` started as a user starts it, on a free port of 127.0.0.1."""

    def __init__(self, log_path: Path, env: dict[str, str], workers: int = 2) -> None:
        """Start the server; its output goes to ``log_path``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        full_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.proc = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "ml_serving.py"), *args],
            cwd=PROJECT_DIR,
            env={**full_env, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, ok=(200,), timeout: float = 90.0) -> requests.Response:
        """Wait until /health answers one of ``ok``; fail with the server's log if not."""
        try:
            return wait_for_http(f"{self.url}/health", timeout=timeout, ok=ok)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{self.output()}") from None

    def output(self, tail: int = 20_000) -> str:
        """Return the end of what the server printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def wait_for_log(self, text: str, count: int, timeout: float = 60.0) -> None:
        """Wait until ``text`` appears ``count`` times in the output (once per worker, say)."""
        deadline = time.monotonic() + timeout
        while self.log_path.read_text(errors="replace").count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen {count} times:\n{self.output()}")
            time.sleep(0.1)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Scrape /metrics and return {(sample name, sorted labels): value}."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def stop(self, timeout: float = 30.0) -> int:
        """Stop gracefully with SIGTERM (kill after ``timeout``); return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """Return a starter of real servers; every server started is stopped afterwards."""
    started: list[ServingProcess] = []

    def start(env: dict[str, str], workers: int = 2) -> ServingProcess:
        """Start ``python ml_serving.py`` with ``env`` over this environment."""
        server = ServingProcess(tmp_path / f"server-{len(started)}.log", env, workers)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
