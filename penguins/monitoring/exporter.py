"""Run the exporter: open its sources, serve their metrics over HTTP, stop on a signal."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from penguins.config import redact, redact_uri
from penguins.monitoring.collector import MonitoringCollector
from penguins.monitoring.reference import ReferenceTracker
from penguins.monitoring.settings import MonitorSettings
from penguins.predlog import open_log

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# What a person who opens the exporter's address in a browser reads.
INDEX_TEXT = f"penguins exporter: the Prometheus metrics are at {METRICS_PATH}\n"
NOT_FOUND_TEXT = f"not found: the metrics are at {METRICS_PATH}\n"

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def build_collector(settings: MonitorSettings) -> MonitoringCollector:
    """Open the prediction log and follow the serving model's reference."""
    tracker = ReferenceTracker.of_settings(settings)
    return MonitoringCollector(open_log(settings.prediction_log_uri), tracker.current, settings)


def _text(start_response: Callable, status: str, text: str, *extra: tuple[str, str]):
    """Answer a short plain-text body."""
    body = text.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, [*headers, *extra])
    return [body]


def exporter_app(registry: CollectorRegistry) -> WsgiApp:
    """Return the exporter's WSGI app: a scrape at /metrics, a pointer at /, 404 elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Route one request; only /metrics runs a collection."""
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH:
            return metrics(environ, start_response)
        if path != "/":
            # prometheus_client would scrape on any path; a typo should say it is one.
            return _text(start_response, "404 Not Found", NOT_FOUND_TEXT)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _text(
                start_response, "405 Method Not Allowed", "use GET\n", ("Allow", "GET, HEAD")
            )
        return _text(start_response, "200 OK", INDEX_TEXT)

    return app


class _QuietHandler(WSGIRequestHandler):
    """Request handler that logs nothing: a line per scrape would bury the exporter's log."""

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing."""


def start_server(
    app: WsgiApp, host: str, port: int
) -> tuple[ThreadingWSGIServer, threading.Thread]:
    """Serve ``app`` on host:port from a daemon thread, one thread per request."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]

    class Server(ThreadingWSGIServer):
        """The threading server, on the address family of ``host`` (IPv4 or IPv6)."""

        address_family = family

    server = make_server(address[0], port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


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
        uri = settings.prediction_log_uri
        reason = redact(str(exc), uri)
        logger.error("cannot open the prediction log %s: %s", redact_uri(uri), reason)
        return 1
    try:
        # One collection before serving: the first scrape then finds the reference loaded
        # (or the reason it is missing already logged) and stays quick.
        list(collector.collect())
        registry = CollectorRegistry()
        registry.register(collector)
        try:
            server, thread = start_server(exporter_app(registry), settings.host, settings.port)
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
            return 1
        logger.info("serving metrics on http://%s:%d%s", settings.host, settings.port, METRICS_PATH)
        wait_for_stop_signal()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    finally:
        collector.log.close()
    logger.info("stopped")
    return 0
