"""Measure what one exporter scrape costs as the prediction log grows (default: to 1M rows).

Fills a prediction log in a temporary directory through PredictionLog (the code the
API writes with), labels a share of the rows through attach_feedback, and times
full scrapes (generate_latest over the exporter's collector, drift included) at
several log sizes. Run from the project root: ``python bench/scrape_cost.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from penguins.config import DEFAULT_DATA_PATH  # noqa: E402
from penguins.exporter import MonitoringCollector  # noqa: E402
from penguins.features import FEATURES, load_dataset  # noqa: E402
from penguins.predlog import PredictionLog, PredictionRecord  # noqa: E402
from penguins.reference import Reference  # noqa: E402
from penguins.traffic import sample_inputs  # noqa: E402

CHUNK = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions to log")
    parser.add_argument(
        "--checkpoints",
        type=int,
        default=4,
        help="log sizes to time at, spaced by factors of ten up to --rows",
    )
    parser.add_argument(
        "--label-share", type=float, default=0.1, help="share of predictions that get feedback"
    )
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes timed per log size")
    parser.add_argument("--plot", type=Path, help="save a picture of scrape time by log size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)  # fmt: skip
    if args.rows < CHUNK or args.scrapes < 1 or not 0 <= args.label_share <= 1:
        parser.error(f"need --rows >= {CHUNK}, --scrapes >= 1 and --label-share in [0, 1]")
    return args


def fill(log: PredictionLog, data, n: int, label_share: float, rng, progress: tqdm) -> None:
    """Append ``n`` predictions in chunks, feeding back the actual species for a share."""
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        inputs = sample_inputs(data, size, rng)
        values = inputs[list(FEATURES)].to_numpy(dtype="float64").tolist()
        species = inputs["species"].tolist()
        now = time.time()
        records = [
            PredictionRecord(uuid.uuid4().hex, now, "random_forest", "1", row, s, 0.9)
            for row, s in zip(values, species, strict=True)
        ]
        log.record(records)
        for i in np.flatnonzero(rng.random(size) < label_share):
            log.attach_feedback(records[i].id, species[i])
        progress.update(size)


def time_scrapes(registry: CollectorRegistry, scrapes: int) -> list[float]:
    """Return the seconds each of ``scrapes`` full scrapes took."""
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - start)
    return times


def plot(results: list[tuple[int, list[float]]], path: Path) -> None:
    """Save scrape time (median and max) by log size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [size for size, _ in results]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sizes, [statistics.median(t) * 1000 for _, t in results], "o-", label="median")
    ax.plot(sizes, [max(t) * 1000 for _, t in results], "s--", label="max")
    ax.set(xscale="log", xlabel="predictions in the log", ylabel="scrape time (ms)",
           title="Exporter scrape cost by prediction log size")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Fill a temporary log step by step and print the scrape time at each size."""
    args = parse_args(argv)
    data = load_dataset(DEFAULT_DATA_PATH)
    rng = np.random.default_rng(args.seed)
    reference = Reference(
        "penguins-classifier", "1", "bench", data.sample(frac=0.8, random_state=0)
    )
    sizes = sorted({max(CHUNK, args.rows // 10**k) for k in range(args.checkpoints)})
    results: list[tuple[int, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="penguins-bench-") as tmp:
        log = PredictionLog(f"sqlite:///{Path(tmp) / 'predictions.db'}", max_rows=args.rows)
        registry = CollectorRegistry()
        registry.register(MonitoringCollector(log, lambda: reference))
        with tqdm(total=args.rows, unit="pred", desc="filling the log") as progress:
            for size in sizes:
                fill(log, data, size - log.count(), args.label_share, rng, progress)
                results.append((size, time_scrapes(registry, args.scrapes)))
        db_mb = (Path(tmp) / "predictions.db").stat().st_size / 1e6
        log.close()
    print(f"{'rows':>10}  {'median ms':>9}  {'p95 ms':>7}  {'max ms':>7}")
    for size, times in results:
        p95 = float(np.percentile(times, 95))
        print(f"{size:>10,}  {statistics.median(times) * 1e3:9.2f}  {p95 * 1e3:7.2f}  "
              f"{max(times) * 1e3:7.2f}")  # fmt: skip
    print(f"log file at {sizes[-1]:,} rows: {db_mb:.0f} MB; {args.scrapes} scrapes per size")
    if args.plot:
        plot(results, args.plot)
        print(f"picture: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
