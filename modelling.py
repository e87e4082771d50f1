"""Train Random Forest, Logistic Regression and SVM; track them in MLflow; promote the best.

Usage: python modelling.py [--data PATH] [--force] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from penguins.config import (
    DEFAULT_DATA_PATH,
    EXPERIMENT_NAME,
    add_store_flags,
)
from penguins.features import DataError, load_dataset
from penguins.registry import StoreError, connect

log = logging.getLogger("modelling")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line flags; defaults come from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_PATH, help="penguins CSV")
    add_store_flags(parser, "alias to move to the new version")
    parser.add_argument(
        "--force",
        action="store_true",
        help="move the alias to the new version even if the current one scores better",
    )
    return parser.parse_args(argv)


def comparison_table(results, best) -> str:
    """Format the candidates' scores as a fixed-width table, best marked with *."""
    cols = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "cv_accuracy_mean")
    header = f"  {'model':<20}" + "".join(f"{c:>17}" for c in cols) + f"{'fit_s':>8}"
    lines = [header, "  " + "-" * (len(header) - 2)]
    for r in results:
        mark = "*" if r is best else " "
        cells = "".join(f"{r.metrics[c]:>17.4f}" for c in cols)
        lines.append(f"{mark} {r.candidate.name:<20}{cells}{r.metrics['fit_time_seconds']:>8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train, compare, register and maybe promote; return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Imported here so that --help stays fast.
    from penguins.training import SELECTION_RULE, pick_best, promote, train_all, using_store

    started = time.perf_counter()
    try:
        data = load_dataset(args.data)
        client = connect(args.tracking_uri)
        log.info("data: %s (%d usable rows)", args.data, len(data))
        log.info("tracking: %s, experiment %r", args.tracking_uri, EXPERIMENT_NAME)
        with using_store(args.tracking_uri):
            results, split_ = train_all(data, args.data, args.tracking_uri, log.info)
            best = pick_best(results)
            log.info("\n%s\n", comparison_table(results, best))
            log.info("selection rule: %s", SELECTION_RULE)
            log.info("best: %s (run %s)", best.candidate.name, best.run_id)
            outcome = promote(client, best, split_, args.model_name, args.alias, args.force)
    except (DataError, StoreError) as exc:
        log.error("error: %s", exc)
        return 2
    verb = "moved to" if outcome.moved else "stays off"
    log.info(
        "registered %s version %s; alias %r %s it: %s",
        args.model_name,
        outcome.version,
        args.alias,
        verb,
        outcome.reason,
    )
    log.info("done in %.1f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
