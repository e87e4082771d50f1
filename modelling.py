"""Train Random Forest, Logistic Regression and SVM; track them in MLflow; promote the best.

Usage: python modelling.py [--data PATH] [--force] [--tracking-uri URI]
"""

from __future__ import annotations

import logging
import sys
import time

from penguins.config import parse_settings
from penguins.training.settings import TrainingSettings

log = logging.getLogger("modelling")


def parse_args(argv: list[str] | None = None) -> TrainingSettings:
    """Return the settings: defaults, then the environment, then the flags."""
    return parse_settings(TrainingSettings, argv, __doc__.splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    """Train, compare, register and maybe promote; return the exit code."""
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Imported here so that --help stays fast: training needs MLflow and scikit-learn.
    from penguins.features import DataError
    from penguins.registry import StoreError
    from penguins.training.workflow import train_and_promote

    started = time.perf_counter()
    try:
        train_and_promote(settings, log.info)
    except (DataError, StoreError) as exc:
        log.error("error: %s", exc)
        return 2
    log.info("done in %.1f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
