"""Measure what one exporter scrape costs as the prediction log grows (default: to 1M rows).

Fills a prediction log in a temporary directory through PredictionLog (the code the API
writes with, ids made as the API makes them), labels a share of the rows through
attach_feedback, and times full scrapes (generate_latest over the exporter's collector,
drift included) at several log sizes. Run from the project root: ``python bench/scrape_cost.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest
from tqdm import tqdm

# `python bench/scrape_cost.py` puts bench/ on sys.path; the packages live in the root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from penguins.config import DEFAULT_DATA_PATH, sqlite_uri
from penguins.features import FEATURES, load_dataset
from penguins.monitoring.collector import MonitoringCollector
from penguins.monitoring.reference import Reference
from penguins.predlog import PredictionLog, Predictions, open_log
from penguins.serving.ids import new_ids
from penguins.traffic.inputs import sample_inputs

CHUNK = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--rows", type=int, default=1_000_000, help="predictions to log")
    add("--checkpoints", type=int, default=4, help="log sizes timed, factors of ten up to --rows")
    add("--label-share", type=float, default=0.1, help="share of predictions that get feedback")
    add("--scrapes", type=int, default=20, help="scrapes timed per log size")
    add("--plot", type=Path, help="save a picture of scrape time by log size")
    add("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < CHUNK or args.scrapes < 1 or not 0 <= args.label_share <= 1:
        parser.error(f"need --rows >= {CHUNK}, --scrapes >= 1 and --label-share in [0, 1]")
    return args


def checkpoints(rows: int, count: int) -> list[int]:
    """Return the log sizes to time at: ``rows`` and tenths of it, none below one chunk."""
    return sorted({max(CHUNK, rows // 10**k) for k in range(count)})


def fill(log: PredictionLog, data: pd.DataFrame, n: int, label_share: float, rng) -> None:
    """Append ``n`` predictions in chunks, feeding back the actual species for a share."""
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        inputs = sample_inputs(data, size, rng)
        values = inputs[list(FEATURES)].to_numpy(dtype="float64").tolist()
        species = inputs["species"].tolist()
        batch = Predictions(
            new_ids(size), time.time(), "random_forest", "1", values, species, [0.9] * size
        )
        log.record_predictions(batch)
        for i in np.flatnonzero(rng.random(size) < label_share):
            log.attach_feedback(batch.ids[i], species[i])


def time_scrapes(registry: CollectorRegistry, scrapes: int) -> list[float]:
    """Return the seconds each of ``scrapes`` full scrapes took."""
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - start)
    return times


def measure(args: argparse.Namespace, folder: Path) -> list[tuple[int, list[float]]]:
    """Fill a log in ``folder`` step by step; return the scrape times at each size."""
    data = load_dataset(DEFAULT_DATA_PATH)
    rng = np.random.default_rng(args.seed)
    reference = Reference(
        "penguins-classifier", "1", "bench", data.sample(frac=0.8, random_state=0)
    )
    log = open_log(sqlite_uri(folder / "predictions.db"), max_rows=args.rows)
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(log, lambda: reference))
    results, filled = [], 0
    with tqdm(total=args.rows, unit="pred", desc="filling the log") as progress:
        for size in checkpoints(args.rows, args.checkpoints):
            fill(log, data, size - filled, args.label_share, rng)
            progress.update(size - filled)
            filled = size
            results.append((size, time_scrapes(registry, args.scrapes)))
    log.close()
    return results


def plot(results: list[tuple[int, list[float]]], path: Path) -> None:
    """Save scrape time (median and max) by log size."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    sizes = [size for size, _ in results]
    ax = (fig := Figure(figsize=(6, 3.5), layout="constrained")).subplots()
    ax.plot(sizes, [statistics.median(t) * 1000 for _, t in results], "o-", label="median")
    ax.plot(sizes, [max(t) * 1000 for _, t in results], "s--", label="max")
    ax.set(xscale="log", xlabel="predictions in the log", ylabel="scrape time (ms)", ylim=(0, None))
    ax.set_title("Exporter scrape cost by prediction log size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Fill a temporary log step by step and print the scrape time at each size."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="penguins-bench-") as tmp:
        results = measure(args, Path(tmp))
        db_mb = (Path(tmp) / "predictions.db").stat().st_size / 1e6
    print(f"{'rows':>10}  {'median ms':>9}  {'p95 ms':>7}  {'max ms':>7}")
    for size, times in results:
        median, p95 = statistics.median(times), float(np.percentile(times, 95))
        print(f"{size:>10,}  {median * 1e3:9.2f}  {p95 * 1e3:7.2f}  {max(times) * 1e3:7.2f}")
    print(f"log file at {results[-1][0]:,} rows: {db_mb:.0f} MB; {args.scrapes} scrapes per size")
    if args.plot:
        plot(results, args.plot)
        print(f"picture: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
