"""Run the API under gunicorn, programmatically, with prometheus multiprocess metrics.

This module does not import prometheus_client: :func:`prepare_metrics_dir` must set
``PROMETHEUS_MULTIPROC_DIR`` before anything does, since the library picks its value
store when it is first imported.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
    "penguins.api",
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
    """Create a SQLite store's tables once, before any worker starts; return whether it worked.

    Workers meeting a new store at the same moment run MLflow's schema migrations
    over each other ("duplicate column", "table already exists"). The work is done in
    a forked child so that the master holds no database connection for its workers
    to inherit.
    """
    if not tracking_uri.startswith("sqlite:"):
        return True  # a tracking server manages its own database
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
    from penguins.metrics import worker_exited

    worker_exited(worker.pid)


def _worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's model refresh and close its prediction log connection."""
    state = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("penguins")
    if state is not None:
        state.close()


class GunicornServer(BaseApplication):
    """gunicorn running the API from the application factory in each worker."""

    def __init__(self, options: Mapping[str, Any], app_config: Mapping[str, Any] | None = None):
        """Keep the gunicorn settings and the app settings; gunicorn reads them at start."""
        self.options = dict(options)
        self.app_config = dict(app_config or {})
        super().__init__()

    def load_config(self) -> None:
        """Apply our settings to gunicorn's config (gunicorn calls this)."""
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("child_exit", _child_exit)
        self.cfg.set("worker_exit", _worker_exit)

    def load(self):
        """Build the Flask app; called in each worker after the fork, not in the master.

        So each worker opens its own store client, prediction log connection and
        refresh thread, none of which survive a fork.
        """
        from penguins.api import create_app

        return create_app(self.app_config)


def gunicorn_options(
    host: str, port: int, workers: int, threads: int, access_log: bool
) -> dict[str, Any]:
    """Return the gunicorn settings of the API."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        # sync by default: see DEFAULT_THREADS in ml_serving.py for why not gthread.
        "worker_class": "gthread" if threads > 1 else "sync",
        "threads": threads,
        "keepalive": 5,
        # gunicorn 26 opens a control socket at one fixed path in $HOME (or
        # $XDG_RUNTIME_DIR); a second server on the machine would take it over. The
        # API does not use it, so none: any number of servers can run side by side.
        "control_socket_disable": True,
        # A worker silent for this long is killed. Booting includes the first model
        # load, which from a remote tracking server can take a while.
        "timeout": 120,
        "graceful_timeout": 30,
        "accesslog": "-" if access_log else None,
        "proc_name": "penguins-api",
    }
