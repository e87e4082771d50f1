"""Reaching the store: why a tracking server could not be reached, and urllib3's retry lines."""

from __future__ import annotations

import itertools
import logging
import socket

import pytest
import requests
from mlflow import MlflowClient

from penguins.registry import RETRY_LOGGER, StoreError, connect, quiet_retries, unreachable_reason

URI = "http://127.0.0.1:9"


def chained(*errors: BaseException) -> BaseException:
    """Return the first error, raised from the second, raised from the third, and so on."""
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


def store_error(root: BaseException) -> StoreError:
    """Return a StoreError over the layers MLflow and requests put around a socket error."""
    return chained(
        StoreError(f"cannot use tracking store {URI}: API request to {URI}/api/2.0 failed " * 3),
        requests.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries"),
        root,
    )


@pytest.mark.parametrize(
    ("root", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "host name not found"),
        (TimeoutError("timed out"), "no answer in time"),
        (ConnectionResetError(104, "reset"), "no connection"),
    ],
)
def test_the_innermost_socket_error_names_the_reason(root, reason):
    assert unreachable_reason(store_error(root)) == reason


def test_a_server_that_answered_is_not_unreachable():
    assert unreachable_reason(StoreError("error code 501 != 200")) is None


def test_an_unreachable_server_is_one_short_line(monkeypatch, caplog):
    def refused(self, **kwargs):
        """Log urllib3's retry line and fail as MLflow does when nothing listens."""
        logging.getLogger(RETRY_LOGGER).warning(
            "Retrying (%r) after %s: %s", "Retry", "x" * 300, "/"
        )
        raise store_error(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(MlflowClient, "search_experiments", refused)
    with pytest.raises(StoreError) as raised:
        connect(URI)
    assert str(raised.value) == (
        f"cannot reach the MLflow tracking server at {URI}: connection refused; "
        "start it or check --tracking-uri (MLFLOW_TRACKING_URI)"
    )
    assert "Retrying" not in caplog.text


def test_a_server_that_answers_wrongly_keeps_its_own_message(monkeypatch):
    def answered(self, **kwargs):
        """Fail as MLflow does when a server answers, but not as MLflow."""
        raise RuntimeError("error code 501 != 200\nand a long body")

    monkeypatch.setattr(MlflowClient, "search_experiments", answered)
    with pytest.raises(StoreError) as raised:
        connect(URI)
    assert str(raised.value) == f"cannot use tracking store {URI}: error code 501 != 200"


def test_retry_lines_are_silenced_only_inside_the_block(caplog):
    logger = logging.getLogger(RETRY_LOGGER)
    with quiet_retries():
        logger.warning("Retrying (%r) after %s", "Retry", "refused")
        logger.warning("Connection pool is full, discarding connection")
    assert "Retrying" not in caplog.text
    assert "Connection pool is full" in caplog.text
    logger.warning("Retrying (%r) after %s", "Retry", "refused")
    assert "Retrying" in caplog.text
