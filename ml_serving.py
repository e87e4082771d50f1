"""Serve the penguins classifier over HTTP: gunicorn, several gevent workers, Prometheus metrics.

Usage: python ml_serving.py [--host HOST] [--port PORT] [--workers N] [...]
"""

from __future__ import annotations

import logging
import os
import sys

from penguins.config import parse_settings
from penguins.serving.settings import ServingSettings

log = logging.getLogger("ml_serving")


def parse_args(argv: list[str] | None = None) -> ServingSettings:
    """Return the settings: defaults, then the environment, then the flags."""
    return parse_settings(ServingSettings, argv, __doc__.splitlines()[0])


def run_debug(settings: ServingSettings) -> int:
    """Run the Werkzeug development server with its debugger: one process, never production."""
    from penguins.serving.app import create_app

    log.warning("FLASK_DEBUG=1: development server with the interactive debugger, one process")
    create_app(settings).run(settings.host, settings.port, debug=True, use_reloader=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Start the server and block until it stops; return the exit code."""
    settings = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
    )
    # MLflow reads the store from the environment when it resolves artifact URIs.
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    from flask.helpers import get_debug_flag

    if get_debug_flag():  # FLASK_DEBUG=1: the only way the debugger comes on
        return run_debug(settings)
    from penguins.serving.server import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
