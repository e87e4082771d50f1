"""Run the API under gunicorn, programmatically, with prometheus multiprocess metrics.

This module does not import prometheus_client: :func:`prepare_metrics_dir` must set
``PROMETHEUS_MULTIPROC_DIR`` before anything does, since the library picks its value
store when it is first imported.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from penguins.config import MULTIPROC_ENV, sqlite_path
from penguins.serving.settings import ServingSettings

log = logging.getLogger(__name__)


def prepare_metrics_dir() -> tuple[Path, bool]:
    """Give this server a fresh, empty metrics directory; return it and whether it is ours.

    An existing ``PROMETHEUS_MULTIPROC_DIR`` is wiped of old ``*.db`` files (values of
    an earlier server would otherwise be added to ours); without one, a temporary
    directory is made and removed when the server stops.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="penguins-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def remove_metrics_dir(path: Path) -> None:
    """Remove a metrics directory this server made."""
    shutil.rmtree(path, ignore_errors=True)


# Imported once in the master so that forked workers share them and boot in a fraction
# of a second instead of each spending seconds on imports: the app, model loading
# (skops imports most of scikit-learn), the estimators our pipelines use, and
# MLflow's SQL stores.
PRELOAD = (
    "penguins.serving.app",
    "mlflow.sklearn",
    "skops.io",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.linear_model",
    "sklearn.svm",
    "sklearn.calibration",
    "sklearn.ensemble",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)
# What a worker still imported when it opened the store and loaded the model: loaded
# in the master, they are shared instead of copied into each worker. Library
# internals that may move between versions, so a missing one is skipped.
PRELOAD_IF_PRESENT = (
    "sqlalchemy.dialects.sqlite",
    "alembic.command",
    "alembic.config",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.model_registry.sqlalchemy_workspace_store",
    "narwhals._pandas_like.dataframe",
    "narwhals._pandas_like.namespace",
)


def preload() -> None:
    """Import the heavy modules workers need, in the master, before any fork."""
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_IF_PRESENT:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def prepare_store(tracking_uri: str, timeout: float = 120.0) -> bool:
    """Open an existing SQLite store once, before any worker starts; return whether it worked.

    Workers meeting a store without tables at the same moment would create them over
    each other ("duplicate column", "table already exists"). A store that does not
    exist is left alone: serving never creates one (a mistyped path would otherwise
    become an empty store); the workers say so and wait for training to make it. The
    work is done in a forked child so that the master holds no database connection
    for its workers to inherit.
    """
    path = sqlite_path(tracking_uri)
    if path is None or not path.exists():
        return True  # a tracking server manages its own database; a missing file waits
    child = multiprocessing.get_context("fork").Process(
        target=_init_store, args=(tracking_uri,), name="store-init"
    )
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
    return child.exitcode == 0


def _init_store(tracking_uri: str) -> None:
    """Open the store once (MLflow creates missing tables); exit non-zero on failure."""
    from penguins.registry import StoreError, connect

    try:
        connect(tracking_uri)
    except StoreError as exc:
        print(f"ml_serving: {exc}", file=sys.stderr)
        sys.exit(1)


def _child_exit(server: Any, worker: Any) -> None:
    """Drop an exited worker's live gauges so they stop counting."""
    from penguins.serving.metrics import worker_exited

    worker_exited(worker.pid)


def _worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's model refresh and close its prediction log connection."""
    api = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("penguins")
    if api is not None:
        api.close()


class GracefulArbiter(Arbiter):
    """gunicorn's master, taking Ctrl-C (SIGINT) as the graceful stop SIGTERM is.

    gunicorn's own quits at once on SIGINT, and the requests in flight then get an
    HTML 500; README tells users to stop the server with Ctrl-C. The workers take the
    same signal from the terminal and stop gracefully too (see ApiWorker).
    """

    def handle_int(self) -> None:
        """Stop as on SIGTERM: stop accepting, answer what is in flight, then exit."""
        self.handle_term()


class GunicornServer(BaseApplication):
    """gunicorn running the API from the application factory in each worker."""

    def __init__(self, settings: ServingSettings) -> None:
        """Keep the settings; gunicorn reads its own from them at start."""
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        """Apply our settings to gunicorn's config (gunicorn calls this)."""
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)
        self.cfg.set("child_exit", _child_exit)
        self.cfg.set("worker_exit", _worker_exit)

    def load(self):
        """Build the Flask app; called in each worker after the fork, not in the master.

        So each worker opens its own store client, prediction log connection and
        refresh thread, none of which survive a fork.
        """
        from penguins.serving.app import create_app

        return create_app(self.settings)

    def run(self) -> None:
        """Run the master until it stops (gunicorn's, with a graceful Ctrl-C)."""
        try:
            GracefulArbiter(self).run()
        except RuntimeError as exc:  # as gunicorn's own run(): a bad setting, say
            log.error("error: %s", exc)
            sys.exit(1)


WORKER_CONNECTIONS = 1000


def gunicorn_options(settings: ServingSettings) -> dict[str, Any]:
    """Return the gunicorn settings of the API."""
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "penguins.serving.worker.ApiWorker",
        # Connections a worker holds at once (each a greenlet of a few kilobytes).
        "worker_connections": WORKER_CONNECTIONS,
        # gevent's worker bounds waiting for the next request and reading its headers
        # together by the keep-alive timeout: a total, not a gap between two reads.
        "keepalive": settings.header_seconds,
        # gunicorn 26 opens a control socket at one fixed path in $HOME (or
        # $XDG_RUNTIME_DIR); a second server on the machine would take it over. The
        # API does not use it, so none: any number of servers can run side by side.
        "control_socket_disable": True,
        # A worker silent for this long is killed. Booting includes the first model
        # load, which from a remote tracking server can take a while.
        "timeout": 120,
        "graceful_timeout": 30,
        "accesslog": "-" if settings.access_log else None,
        "proc_name": "penguins-api",
    }


def exit_worker(code: int) -> NoReturn:
    """End a forked worker at once, as forked children should (multiprocessing does too).

    gunicorn ends workers with sys.exit, which would unwind through the master's
    code (see :func:`serve`) and then tear down the whole module graph, a second or
    more per worker. By now the worker has closed its prediction log; metrics live
    in files.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(settings: ServingSettings) -> int:
    """Run gunicorn with a metrics directory of this server's own; return the exit code."""
    metrics_dir, ours = prepare_metrics_dir()  # before anything imports prometheus_client
    master = os.getpid()
    try:
        return _run(settings, metrics_dir)
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


def _run(settings: ServingSettings, metrics_dir: Path) -> int:
    """Prepare what the workers will share, then serve until gunicorn stops."""
    from penguins.features import DataError
    from penguins.serving.model import smoke_rows

    preload()  # heavy imports once, in the master: workers boot quickly
    try:
        smoke_rows()  # every model is checked on these rows; read once, shared by workers
    except DataError as exc:
        log.error("error: %s", exc)
        return 2
    if not prepare_store(settings.tracking_uri):
        log.warning("store %s not usable yet; workers keep trying", settings.tracking_uri)
    log.info(
        "serving on http://%s:%d with %d workers; metrics in %s",
        settings.host,
        settings.port,
        settings.workers,
        metrics_dir,
    )
    # Move everything imported so far out of the garbage collector's reach: a
    # collection in a worker would otherwise write to the header of every object it
    # inherited, copying the master's pages into each worker (memory), and walk them
    # all on each full collection (a 10k-row batch paid ~0.25 s for one).
    gc.freeze()
    GunicornServer(settings).run()
    return 0
