"""The prediction log: every prediction with its inputs, and the ground truth fed back later.

SQLite in WAL mode, so several server processes write at once and readers (the
exporter) never block them. Each write is committed before the API answers, so
feedback works at once from any worker and a stopped server loses nothing it
answered. Retention is bounded: the newest ``max_rows`` predictions are kept.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from penguins.features import FEATURES

DEFAULT_MAX_ROWS = 1_000_000
# Pruning scans nothing but the primary key; doing it every N inserts keeps it rare.
PRUNE_EVERY = 10_000

_FEATURE_COLUMNS = ",\n    ".join(
    f"{name} {'INTEGER' if name.endswith('_encoded') else 'REAL'} NOT NULL" for name in FEATURES
)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    {_FEATURE_COLUMNS},
    predicted_species TEXT NOT NULL,
    confidence REAL NOT NULL,
    actual_species TEXT,
    feedback_at REAL
);
CREATE INDEX IF NOT EXISTS predictions_feedback
    ON predictions (feedback_at) WHERE feedback_at IS NOT NULL;
"""

_INSERT = (
    "INSERT INTO predictions (id, created_at, model_name, model_version, "
    + ", ".join(FEATURES)
    + ", predicted_species, confidence) VALUES ("
    + ", ".join("?" * (6 + len(FEATURES)))
    + ")"
)


@dataclass(frozen=True)
class PredictionRecord:
    """One logged prediction."""

    id: str
    created_at: float
    model_name: str
    model_version: str
    features: Sequence[float]
    predicted_species: str
    confidence: float

    def as_row(self) -> tuple:
        """Return the values in the order of the INSERT statement."""
        return (
            self.id,
            self.created_at,
            self.model_name,
            self.model_version,
            *self.features,
            self.predicted_species,
            self.confidence,
        )


@dataclass(frozen=True)
class Feedback:
    """What a feedback call found: the prediction it labels and whether it was right."""

    prediction_id: str
    model_name: str
    model_version: str
    predicted_species: str
    actual_species: str

    @property
    def correct(self) -> bool:
        """Return whether the prediction matched the actual species."""
        return self.predicted_species == self.actual_species


def path_from_uri(uri: str) -> Path:
    """Return the file path of a ``sqlite:///PATH`` URI."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise ValueError(f"prediction log URI must look like sqlite:///PATH, got {uri!r}")
    return Path(uri[len(prefix) :])


class PredictionLog:
    """Append predictions, attach feedback, and read recent windows for monitoring."""

    def __init__(self, uri: str, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        """Open (and create if needed) the log at a ``sqlite:///PATH`` URI."""
        self.path = path_from_uri(uri)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._inserted = 0
        self._connect().executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        """Return this process's connection, opening a fresh one after a fork."""
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash; only a power
            # loss can drop the last transactions, and it costs no fsync per request.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def record(self, records: Iterable[PredictionRecord]) -> None:
        """Append predictions in one committed transaction."""
        self.record_rows([r.as_row() for r in records])

    def record_rows(self, rows: Iterable[tuple]) -> None:
        """Append predictions given as tuples in the order of ``PredictionRecord.as_row``.

        ``rows`` may be a generator: SQLite takes one at a time, none kept in memory.
        """
        with self._lock:
            conn = self._connect()
            with conn:
                inserted = conn.executemany(_INSERT, rows).rowcount
            self._inserted += inserted
            if self._inserted >= PRUNE_EVERY:
                self._inserted = 0
                self._prune(conn)

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete all but the newest ``max_rows`` predictions."""
        with conn:
            conn.execute(
                "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - ?",
                (self.max_rows,),
            )

    def attach_feedback(self, prediction_id: str, actual_species: str) -> Feedback | None:
        """Record the actual species of a prediction; return None for an unknown id."""
        with self._lock:
            conn = self._connect()
            with conn:
                row = conn.execute(
                    "UPDATE predictions SET actual_species = ?, feedback_at = ? WHERE id = ? "
                    "RETURNING model_name, model_version, predicted_species",
                    (actual_species, time.time(), prediction_id),
                ).fetchone()
        if row is None:
            return None
        return Feedback(prediction_id, row[0], row[1], row[2], actual_species)

    def get(self, prediction_id: str) -> dict | None:
        """Return one logged prediction as a dict, or None."""
        with self._lock:
            cur = self._connect().execute(
                "SELECT * FROM predictions WHERE id = ?", (prediction_id,)
            )
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        return dict(zip(names, row, strict=True)) if row else None

    def count(self) -> int:
        """Return how many predictions the log holds."""
        with self._lock:
            return self._connect().execute("SELECT COUNT(*) FROM predictions").fetchone()[0]

    def recent_inputs(self, limit: int) -> list[tuple]:
        """Return the feature rows of the newest ``limit`` predictions (newest first)."""
        sql = f"SELECT {', '.join(FEATURES)} FROM predictions ORDER BY seq DESC LIMIT ?"
        with self._lock:
            return self._connect().execute(sql, (limit,)).fetchall()

    def recent_labelled(self, limit: int) -> list[tuple[str, str, str, str]]:
        """Return (model_name, model_version, predicted, actual) of the newest labelled rows."""
        sql = (
            "SELECT model_name, model_version, predicted_species, actual_species "
            "FROM predictions WHERE feedback_at IS NOT NULL ORDER BY feedback_at DESC LIMIT ?"
        )
        with self._lock:
            return self._connect().execute(sql, (limit,)).fetchall()

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
