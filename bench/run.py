"""Benchmark our API against `mlflow models serve` on the same champion; write docs/BENCHMARKS.md.

Usage: python bench/run.py [--train] [--quick] [--duration S] [--tracking-uri URI]
Needs wrk (apt-get install wrk). Only 127.0.0.1 is targeted; every started process is stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

# `python bench/run.py` puts bench/ on sys.path; the packages live in the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report  # noqa: E402
from bench.load import LoadError  # noqa: E402
from bench.servers import ServerError  # noqa: E402
from bench.suite import BenchError, Settings, run  # noqa: E402
from bench.timing import CallError  # noqa: E402
from penguins.config import (  # noqa: E402
    DEFAULT_MODEL_ALIAS,
    DEFAULT_MODEL_NAME,
    PROJECT_DIR,
    default_tracking_uri,
    env_str,
)

log = logging.getLogger("bench")


def _connections(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of connection counts."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("connection counts must be positive")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line flags; the tracking store defaults to the environment's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri",
        default=default_tracking_uri(),
        help="store holding the champion (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="benchmark the champion that the timed `python modelling.py` run trains into a "
        "temporary store, instead of the tracking store's",
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a rough look in ~1 min")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    parser.add_argument(
        "--repeats", type=int, help="wrk runs per server and concurrency (default 2, at least 2)"
    )
    parser.add_argument(
        "--connections", type=_connections, default=(1, 8, 32), help="default 1,8,32"
    )
    parser.add_argument("--workers", type=int, default=2, help="workers per server (default 2)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--servers",
        default="ours,mlflow,mlflow-1w",
        help="comma-separated subset of ours, mlflow (same workers as ours) and mlflow-1w "
        "(one worker: free of uvicorn's multi-worker Nagle delay); default all three",
    )
    parser.add_argument(
        "--markdown", type=Path, default=PROJECT_DIR / "docs" / "BENCHMARKS.md", help="report"
    )
    parser.add_argument(
        "--chart", type=Path, default=PROJECT_DIR / "docs" / "benchmarks.png", help="PNG chart"
    )
    parser.add_argument(
        "--busy-retries",
        type=int,
        default=1,
        help="redo a wrk run up to this many times while other work takes over 10 %% of the "
        "CPU, keeping the quietest attempt (default 1; 0 to never redo)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy profile of our /predict"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures as JSON here")
    parser.add_argument(
        "--no-write", action="store_true", help="print the figures only; write no files"
    )
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.servers.split(",") if n.strip())
    if not names or set(names) - {"ours", "mlflow", "mlflow-1w"}:
        parser.error("--servers takes a subset of ours,mlflow,mlflow-1w")
    args.servers = names
    if args.repeats is not None and args.repeats < 2:
        parser.error("--repeats must be at least 2: the A/B interleaving needs two rounds")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    """Build the run's settings from the flags, --quick shortening what was not given."""
    return Settings(
        tracking_uri=args.tracking_uri,
        model_name=env_str("MODEL_NAME", DEFAULT_MODEL_NAME),
        alias=env_str("MODEL_ALIAS", DEFAULT_MODEL_ALIAS),
        train=args.train,
        servers=args.servers,
        duration_s=args.duration or (2.0 if args.quick else 5.0),
        repeats=args.repeats or 2,
        connections=args.connections,
        workers=args.workers,
        wrk_threads=args.wrk_threads,
        batch_repeats=3 if args.quick else 5,
        scrapes=20 if args.quick else 50,
        inprocess_budget_s=0.3 if args.quick else 1.0,
        warmup_s=1.0 if args.quick else 2.0,
        profile_s=0 if args.no_profile else (4.0 if args.quick else 8.0),
        busy_retries=max(0, args.busy_retries),
    )


def _stop_on_sigterm(signum, frame) -> None:
    """Turn SIGTERM into SystemExit so that the finally blocks stop the servers."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the figures and write the report; return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Started in the background by a non-interactive shell, SIGINT arrives ignored; restore
    # Ctrl-C's KeyboardInterrupt so that an interrupt always stops the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        figures = run(settings_from(args), log.info)
    except (BenchError, LoadError, ServerError, CallError) as exc:
        log.error("benchmark failed: %s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; every started process was stopped")
        return 130
    except SystemExit as exc:  # SIGTERM, after the finally blocks stopped the servers
        log.error("terminated; every started process was stopped")
        return exc.code if isinstance(exc.code, int) else 1
    log.info("\n%s", report.summary(figures))
    if args.no_write:
        return 0
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(report.markdown(figures))
    report.chart(figures, args.chart)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    log.info("wrote %s and %s", args.markdown, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
