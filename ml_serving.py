"""Serve the penguins classifier over HTTP: gunicorn, several workers, Prometheus metrics.

Usage: python ml_serving.py [--host HOST] [--port PORT] [--workers N] [--threads N] [...]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from penguins.config import (
    add_prediction_log_flag,
    add_refresh_flag,
    add_store_flags,
    env_int,
    env_str,
)

log = logging.getLogger("ml_serving")

DEFAULT_PORT = 5000
# 0.0.0.0 so that Prometheus in docker-compose reaches the API through
# host.docker.internal; --host 127.0.0.1 keeps it to this machine.
DEFAULT_HOST = "0.0.0.0"
# gunicorn's sync worker. Threads (gthread) answer more requests per second by keeping
# connections alive, but gunicorn 26.2's gthread worker under steady keep-alive traffic
# takes the whole graceful timeout to stop and leaves requests unanswered meanwhile
# (README.md, "Serving" > "Performance"): opt in with --threads.
DEFAULT_THREADS = 1


def default_workers() -> int:
    """Return the default worker count: WEB_CONCURRENCY, else one per CPU plus one (min 2)."""
    return env_int("WEB_CONCURRENCY", max(2, (os.cpu_count() or 1) + 1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line flags; defaults come from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 5000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="worker processes (default: $WEB_CONCURRENCY, else CPUs + 1, at least 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="threads per worker (default 1: gunicorn's sync worker; more: gthread)",
    )
    add_store_flags(parser, "alias to follow")
    parser.add_argument(
        "--model-uri",
        default=env_str("MODEL_URI", ""),
        help="any MLflow model URI (default: $MODEL_URI, else models:/MODEL_NAME@MODEL_ALIAS)",
    )
    add_prediction_log_flag(parser)
    add_refresh_flag(parser, "how often each worker checks the alias")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=env_int("MAX_BATCH_SIZE", 10_000),
        help="samples per /predict/batch request (default: $MAX_BATCH_SIZE or 10000)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request to standard output"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return args


def app_config(args: argparse.Namespace) -> dict:
    """Return the app settings the flags give (flags win over the environment)."""
    return {
        "MLFLOW_TRACKING_URI": args.tracking_uri,
        "MODEL_URI": args.model_uri,
        "MODEL_NAME": args.model_name,
        "MODEL_ALIAS": args.alias,
        "PREDICTION_LOG_URI": args.prediction_log_uri,
        "MODEL_REFRESH_SECONDS": args.refresh_seconds,
        "MAX_BATCH_SIZE": args.max_batch_size,
    }


def run_debug(args: argparse.Namespace) -> int:
    """Run the Werkzeug development server with its debugger: one process, never production."""
    from penguins.api import create_app

    log.warning("FLASK_DEBUG=1: development server with the interactive debugger, one process")
    create_app(app_config(args)).run(args.host, args.port, debug=True, use_reloader=False)
    return 0


def exit_worker(code: int) -> NoReturn:
    """End a forked worker at once, as forked children should (multiprocessing does too).

    gunicorn ends workers with sys.exit, which would unwind through the master's
    code (see main) and then tear down the whole module graph, a second or more per
    worker. By now the worker has closed its prediction log; metrics live in files.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Start the server and block until it stops; return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
    )
    # MLflow reads the store from the environment when it resolves artifact URIs.
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    from flask.helpers import get_debug_flag

    if get_debug_flag():  # FLASK_DEBUG=1: the only way the debugger comes on
        return run_debug(args)
    return run_gunicorn(args)


def run_gunicorn(args: argparse.Namespace) -> int:
    """Run gunicorn with a metrics directory of this server's own; return the exit code."""
    from penguins.server import prepare_metrics_dir, remove_metrics_dir

    metrics_dir, ours = prepare_metrics_dir()  # before anything imports prometheus_client
    master = os.getpid()
    try:
        return start_gunicorn(args, metrics_dir)
    except SystemExit as exc:  # gunicorn ends with sys.exit, on a clean stop too
        code = exc.code if isinstance(exc.code, int) else 1
        if os.getpid() != master:
            exit_worker(code)
        return code
    finally:
        # Workers are forked inside run() and leave it through here too: only the
        # master may remove the directory, or one worker's exit wipes everyone's metrics.
        if ours and os.getpid() == master:
            remove_metrics_dir(metrics_dir)


def start_gunicorn(args: argparse.Namespace, metrics_dir: Path) -> int:
    """Prepare what the workers will share, then serve until gunicorn stops."""
    from penguins.features import DataError
    from penguins.served_model import smoke_rows
    from penguins.server import GunicornServer, gunicorn_options, preload, prepare_store

    preload()  # heavy imports once, in the master: workers boot quickly
    try:
        smoke_rows()  # every model is checked on these rows; read once, shared by workers
    except DataError as exc:
        log.error("error: %s", exc)
        return 2
    if not prepare_store(args.tracking_uri):
        log.warning("store %s not usable yet; workers keep trying", args.tracking_uri)
    log.info(
        "serving on http://%s:%d with %d workers of %d threads; metrics in %s",
        args.host,
        args.port,
        args.workers,
        args.threads,
        metrics_dir,
    )
    options = gunicorn_options(args.host, args.port, args.workers, args.threads, args.access_log)
    # Move everything imported so far out of the garbage collector's reach: a
    # collection in a worker would otherwise write to the header of every object it
    # inherited, copying the master's pages into each worker (memory), and walk them
    # all on each full collection (a 10k-row batch paid ~0.25 s for one).
    gc.freeze()
    GunicornServer(options, app_config(args)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
