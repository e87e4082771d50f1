"""Fixtures of the serving integration tests: real MLflow stores, apps on them, real servers.

Apps built here get no ready-made model: they follow the store's alias through the
real model manager. Servers are ``python ml_serving.py`` started through the shared
process helper, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from penguins.config import from_env, sqlite_uri
from penguins.serving.app import create_app
from penguins.serving.metrics import ServingMetrics
from penguins.serving.settings import ServingSettings
from tests.support import ManagedProcess, free_port

# ---- stores ------------------------------------------------------------------------


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


# ---- apps in this process, following a store -----------------------------------------


@pytest.fixture
def make_app(trained_store, tmp_path) -> Iterator[Callable[..., Flask]]:
    """Return a factory of apps on the session store, each with a fresh log and registry."""
    apps: list[Flask] = []

    def make(**overrides) -> Flask:
        """Build an app; keyword arguments override its settings."""
        values = {
            "tracking_uri": trained_store.tracking_uri,
            "prediction_log_uri": sqlite_uri(tmp_path / f"predictions-{len(apps)}.db"),
            "refresh_seconds": 0.0,  # tests refresh the model themselves
            **overrides,
        }
        settings = from_env(ServingSettings, environ={}, **values)
        app = create_app(settings, metrics=ServingMetrics(CollectorRegistry()))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["penguins"].close()


@pytest.fixture
def app(make_app) -> Flask:
    """Return an app serving the session store's champion."""
    return make_app()


@pytest.fixture
def client(app):
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def registry(app) -> CollectorRegistry:
    """Return the registry the app's metrics live on."""
    return app.extensions["penguins"].service.metrics.registry


# ---- real servers ------------------------------------------------------------------


class ApiServer:
    """``python ml_serving.py`` started as a user starts it, on a free port of 127.0.0.1."""

    def __init__(self, log_path: Path, env: dict[str, str], workers: int = 2) -> None:
        """Start the server; its output goes to ``log_path``."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        self.process = ManagedProcess.python("ml_serving.py", *args, log_path=log_path, env=env)

    def wait_ready(self, ok=(200,), timeout: float = 90.0) -> requests.Response:
        """Wait until /health answers one of ``ok``; fail with the server's log if not."""
        return self.process.wait_for_http(f"{self.url}/health", timeout=timeout, ok=ok)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Scrape /metrics and return {(sample name, sorted labels): value}."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@contextlib.contextmanager
def running(root: Path, env: dict[str, str], workers: int = 2) -> Iterator[ApiServer]:
    """Start a server logging into ``root``, wait until it is ready, stop it after the block."""
    server = ApiServer(root / "server.log", env, workers=workers)
    try:
        server.wait_ready()
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., ApiServer]]:
    """Return a starter of real servers; every server started is stopped afterwards."""
    started: list[ApiServer] = []

    def start(env: dict[str, str], workers: int = 2) -> ApiServer:
        """Start ``python ml_serving.py`` with ``env`` over this environment."""
        server = ApiServer(tmp_path / f"server-{len(started)}.log", env, workers)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.stop()
