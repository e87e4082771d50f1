"""Fixtures of the traffic integration tests: the real API serving a trained champion."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from penguins.config import sqlite_uri
from tests.support.processes import ManagedProcess, free_port


@dataclass(frozen=True)
class Api:
    """Where a started API listens, and the prediction log it writes."""

    url: str
    log_uri: str


@pytest.fixture(scope="module")
def api(trained_store, tmp_path_factory) -> Iterator[Api]:
    """Serve the trained champion with ``python ml_serving.py`` (two workers) until the end."""
    root = tmp_path_factory.mktemp("api")
    log_uri = sqlite_uri(root / "predictions.db")
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
        "PREDICTION_LOG_URI": log_uri,
        "MODEL_URI": "",  # empty is unset: serve the store's champion, not an inherited URI
    }
    argv = ("--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    with ManagedProcess.python("ml_serving.py", *argv, log_path=root / "api.log", env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        proc.wait_for_http(f"{url}/health", timeout=90)
        yield Api(url, log_uri)
