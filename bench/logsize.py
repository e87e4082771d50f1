"""Prediction logs of a given size: prefilled as the API writes them, named, counted.

The batch stage at log sizes times our API on logs that already hold N predictions, so
that what an insert costs in a big log (its indexes, and retention pruning once the log
is full) shows beside an empty one. A log is prefilled through the log's own
:meth:`PredictionLog.record_predictions`, in requests of :data:`CHUNK` rows, so its file
is whatever the current schema makes: time-ordered ids from ``new_ids``, real feature
rows of the data set, ``created_at`` increasing over the past day, before any id the
servers make.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from penguins.config import DEFAULT_DATA_PATH, sqlite_uri
from penguins.features import CATEGORICAL_FEATURES, FEATURES, TARGET, load_dataset
from penguins.predlog import Predictions, open_log
from penguins.serving.ids import IdClock, new_ids

CHUNK = 10_000  # rows per prefill request, the API's largest batch
BATCHES = (1000, 10_000)  # rows per timed /predict/batch
SPAN_S = 86_400.0  # a prefilled log covers the day before it was made

Row = tuple[float | int, ...]


def size_label(rows: int) -> str:
    """Return a log size as people say it: 0, 300k, 1M, 1500k."""
    if rows and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows and rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


def server_name(rows: int) -> str:
    """Return the name of our API running on a log of ``rows`` rows: ours@300k."""
    return f"ours@{size_label(rows)}"


def log_file(folder: Path, rows: int) -> Path:
    """Return where the log of ``rows`` prefilled rows lives."""
    return folder / f"predictions-prefilled-{rows}.db"


def data_rows(path: Path = DEFAULT_DATA_PATH) -> tuple[list[Row], list[str]]:
    """Return the data set's feature rows (Python numbers, as the API parses them) and species."""
    data = load_dataset(path)
    kinds = [int if name in CATEGORICAL_FEATURES else float for name in FEATURES]
    rows = [
        tuple(kind(v) for kind, v in zip(kinds, row, strict=True))
        for row in data[list(FEATURES)].itertuples(index=False, name=None)
    ]
    return rows, data[TARGET].tolist()


class Filler:
    """Append predictions to logs along one timeline shared by every size of one build.

    Row ``i`` of the timeline belongs to request ``i // CHUNK``, made at
    ``start + (i // CHUNK) * step``; its id comes from one clock at that millisecond,
    so ids rise with the rows, also across a copied-and-extended file.
    """

    def __init__(self, largest: int, algorithm: str, model_version: str, now: float) -> None:
        """Plan a timeline of ``largest`` rows that ends before ``now``."""
        self.algorithm, self.model_version = algorithm, model_version
        self.rows, self.species = data_rows()
        requests = max(1, -(-largest // CHUNK))
        self.start, self.step = now - SPAN_S, SPAN_S / requests
        # A plausible confidence per data row, the same in every build.
        self.confidences = np.random.default_rng(0).uniform(0.6, 1.0, len(self.rows)).tolist()
        self.clock = IdClock()

    def request(self, first: int, n: int) -> Predictions:
        """Return the predictions of timeline rows ``first`` to ``first + n``, one request."""
        created_at = self.start + (first // CHUNK) * self.step
        picked = [(first + i) % len(self.rows) for i in range(n)]
        return Predictions(
            ids=new_ids(n, self.clock, now_ms=int(created_at * 1000)),
            created_at=created_at,
            algorithm=self.algorithm,
            model_version=self.model_version,
            rows=[self.rows[i] for i in picked],
            species=[self.species[i] for i in picked],
            confidences=[self.confidences[i] for i in picked],
        )

    def fill(self, path: Path, first: int, end: int) -> None:
        """Append timeline rows ``first`` to ``end`` to the log file at ``path``."""
        log = open_log(sqlite_uri(path))
        try:
            at = first
            while at < end:  # requests end on multiples of CHUNK, whichever log they go to
                upto = min(end, (at // CHUNK + 1) * CHUNK)
                log.record_predictions(self.request(at, upto - at))
                at = upto
        finally:
            log.close()  # the last connection: SQLite folds the WAL into the file


def build(
    folder: Path,
    sizes: Sequence[int],
    algorithm: str,
    model_version: str,
    say: Callable[[str], None] = print,
) -> dict[int, tuple[Path, float]]:
    """Prefill a log of each non-zero size; return each one's file and seconds to make.

    Smallest first: each log is a copy of the one before it, extended along the same
    timeline, so ``1M`` costs what its extra rows cost. A copy is only taken of a closed
    log (no write-ahead file beside it), which is a complete database by itself.
    """
    wanted = sorted({n for n in sizes if n > 0})
    built: dict[int, tuple[Path, float]] = {}
    if not wanted:
        return built
    filler, previous = Filler(wanted[-1], algorithm, model_version, time.time()), 0
    for rows in wanted:
        started, path = time.perf_counter(), log_file(folder, rows)
        if previous:
            source = built[previous][0]
            if source.with_name(source.name + "-wal").exists():
                raise RuntimeError(f"{source} still has a write-ahead log: not copied")
            shutil.copyfile(source, path)
        filler.fill(path, previous, rows)
        built[rows] = (path, time.perf_counter() - started)
        say(f"  prefilled a log of {rows:,} rows in {built[rows][1]:.1f} s")
        previous = rows
    return built


def describe(found: dict) -> str:
    """Return one log's figures of the stage as a console line: rows/s per batch, rows."""
    rates = [
        f"{int(n):,}-row {int(n) * len(s) / sum(s):,.0f} rows/s"
        for n, s in found["batch_s"].items()
        if s and sum(s)
    ]
    return f"{', '.join(rates)}; log rows {found['rows_before']:,} -> {found['rows_after']:,}"


def row_count(path: Path) -> int:
    """Return how many predictions the log file holds now (0 when there is no file yet)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    finally:
        conn.close()
