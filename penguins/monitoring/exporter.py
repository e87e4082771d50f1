"""Run the exporter: open its sources, serve their metrics over HTTP, stop on a signal."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading

from prometheus_client import CollectorRegistry, start_http_server

from penguins.monitoring.collector import MonitoringCollector
from penguins.monitoring.reference import ReferenceTracker
from penguins.monitoring.settings import MonitorSettings
from penguins.predlog import PredictionLog

logger = logging.getLogger(__name__)


def build_collector(settings: MonitorSettings) -> MonitoringCollector:
    """Open the prediction log and follow the serving model's reference."""
    tracker = ReferenceTracker.of_settings(settings)
    return MonitoringCollector(
        PredictionLog(settings.prediction_log_uri), tracker.current, settings
    )


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM arrives."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def run(settings: MonitorSettings) -> int:
    """Serve the metrics until SIGINT or SIGTERM; return the exit code."""
    # MLflow draws a progress bar on every artifact download; in a server log it is noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        collector = build_collector(settings)
    except (ValueError, OSError, sqlite3.Error) as exc:
        logger.error("cannot open the prediction log %s: %s", settings.prediction_log_uri, exc)
        return 1
    try:
        # One collection before serving: the first scrape then finds the reference loaded
        # (or the reason it is missing already logged) and stays quick.
        list(collector.collect())
        registry = CollectorRegistry()
        registry.register(collector)
        try:
            server, thread = start_http_server(settings.port, addr=settings.host, registry=registry)
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
            return 1
        logger.info("serving metrics on http://%s:%d/metrics", settings.host, settings.port)
        wait_for_stop_signal()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    finally:
        collector.log.close()
    logger.info("stopped")
    return 0
