"""Serve system usage, live accuracy and input drift of the penguins model to Prometheus.

Run from the project root: ``python prometheus_exporter.py`` (port 8000). Every value
is read when Prometheus scrapes; see README.md, "Model monitoring", for what each means.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading

from prometheus_client import CollectorRegistry, start_http_server

from penguins.config import (
    add_prediction_log_flag,
    add_refresh_flag,
    add_store_flags,
    env_float,
    env_int,
    env_str,
)
from penguins.exporter import MonitoringCollector, MonitorSettings
from penguins.predlog import PredictionLog
from penguins.reference import ReferenceTracker
from penguins.registry import limit_http_retries

logger = logging.getLogger("prometheus_exporter")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; defaults come from the environment."""
    defaults = MonitorSettings()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default=env_str("PROMETHEUS_HOST", "0.0.0.0"),
        help="address to listen on (env PROMETHEUS_HOST)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env_int("PROMETHEUS_PORT", 8000),
        help="port to listen on (env PROMETHEUS_PORT)",
    )
    add_prediction_log_flag(parser)
    add_store_flags(parser, "alias of the version whose training data is the drift reference")
    add_refresh_flag(parser, "look the alias up at most this often")
    parser.add_argument(
        "--accuracy-window",
        type=int,
        default=env_int("LIVE_ACCURACY_WINDOW", defaults.accuracy_window),
        help="newest labelled predictions live accuracy covers (env LIVE_ACCURACY_WINDOW)",
    )
    parser.add_argument(
        "--accuracy-min-labels",
        type=int,
        default=env_int("LIVE_ACCURACY_MIN_LABELS", defaults.accuracy_min_labels),
        help="fewer labels than this in the window: no live accuracy "
        "(env LIVE_ACCURACY_MIN_LABELS)",
    )
    parser.add_argument(
        "--drift-window",
        type=int,
        default=env_int("DRIFT_WINDOW", defaults.drift_window),
        help="newest predictions whose inputs drift covers (env DRIFT_WINDOW)",
    )
    parser.add_argument(
        "--drift-min-samples",
        type=int,
        default=env_int("DRIFT_MIN_SAMPLES", defaults.drift_min_samples),
        help="fewer inputs than this: no drift values (env DRIFT_MIN_SAMPLES)",
    )
    parser.add_argument(
        "--drift-threshold",
        type=float,
        default=env_float("DRIFT_PSI_THRESHOLD", defaults.drift_threshold),
        help="PSI above which ml_drift_detected is 1 (env DRIFT_PSI_THRESHOLD)",
    )
    parser.add_argument(
        "--disk-path",
        default=env_str("DISK_USAGE_PATH", defaults.disk_path),
        help="path whose file system system_disk_usage_percent reports (env DISK_USAGE_PATH)",
    )
    parser.add_argument(
        "--log-level",
        default=env_str("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(env LOG_LEVEL)",
    )
    args = parser.parse_args(argv)
    positive = ("port", "accuracy_window", "accuracy_min_labels", "drift_window",
                "drift_min_samples")  # fmt: skip
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.refresh_seconds < 0 or args.drift_threshold <= 0:
        parser.error("--refresh-seconds must be >= 0 and --drift-threshold > 0")
    return args


def build_collector(args: argparse.Namespace) -> MonitoringCollector:
    """Open the prediction log and follow the serving model's reference."""
    settings = MonitorSettings(
        accuracy_window=args.accuracy_window,
        accuracy_min_labels=args.accuracy_min_labels,
        drift_window=args.drift_window,
        drift_min_samples=args.drift_min_samples,
        drift_threshold=args.drift_threshold,
        disk_path=args.disk_path,
    )
    tracker = ReferenceTracker(args.tracking_uri, args.model_name, args.alias, args.refresh_seconds)
    return MonitoringCollector(PredictionLog(args.prediction_log_uri), tracker.current, settings)


def main(argv: list[str] | None = None) -> int:
    """Serve the metrics until SIGINT or SIGTERM; return the exit code."""
    try:
        args = parse_args(argv)
    except ValueError as exc:  # a malformed environment variable
        print(f"prometheus_exporter: {exc}", file=sys.stderr)
        return 2
    # MLflow draws a progress bar on every artifact download; in a server log it is noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A scrape that meets an unreachable tracking server must not hang for minutes.
    limit_http_retries()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        collector = build_collector(args)
    except (ValueError, OSError, sqlite3.Error) as exc:
        logger.error("cannot open the prediction log %s: %s", args.prediction_log_uri, exc)
        return 1
    registry = CollectorRegistry()
    # One collection before serving: the first scrape then finds the reference loaded
    # (or the reason it is missing already logged) and stays quick.
    list(collector.collect())
    registry.register(collector)
    try:
        server, thread = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logger.info("serving metrics on http://%s:%d/metrics", args.host, args.port)
    stop.wait()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    collector.log.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
