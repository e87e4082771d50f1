"""Serve system usage, live accuracy and input drift of the penguins model to Prometheus.

Run from the project root: ``python prometheus_exporter.py`` (port 8000). Every value
is read when Prometheus scrapes; docs/monitoring.md says what each means.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from penguins.config import parse_settings
from penguins.monitoring.exporter import run
from penguins.monitoring.settings import MonitorSettings


def parse_args(argv: Sequence[str] | None = None) -> MonitorSettings:
    """Return the settings: defaults, then the environment, then the flags in ``argv``."""
    return parse_settings(MonitorSettings, argv, __doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the metrics until SIGINT or SIGTERM; return the exit code."""
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
