"""The prediction log: every prediction with its inputs, and the ground truth fed back later.

SQLite in WAL mode, so several server processes write at once and readers (the
exporter) never block them. Each write is committed before the API answers, so
feedback works at once from any worker and a stopped server loses nothing it
answered. Retention is bounded: the newest ``max_rows`` predictions are kept.

The log owns its columns: writers hand it :class:`Predictions`, readers get plain
rows from the ``recent_*`` methods. Its schema carries a version (SQLite's
``user_version``); a log written by an earlier version is migrated forward on open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from penguins.config import sqlite_path
from penguins.features import FEATURES

_log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 1_000_000
# Pruning scans nothing but the primary key; doing it every N inserts keeps it rare.
PRUNE_EVERY = 10_000

_FEATURE_COLUMNS = ",\n    ".join(
    f"{name} {'INTEGER' if name.endswith('_encoded') else 'REAL'} NOT NULL" for name in FEATURES
)
_TABLE = f"""
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    algorithm TEXT NOT NULL,
    model_version TEXT NOT NULL,
    {_FEATURE_COLUMNS},
    predicted_species TEXT NOT NULL,
    confidence REAL NOT NULL,
    actual_species TEXT,
    feedback_at REAL
);
CREATE INDEX IF NOT EXISTS predictions_feedback
    ON predictions (feedback_at) WHERE feedback_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS log_probe (id INTEGER PRIMARY KEY, probed_at REAL NOT NULL);
"""
# Each step takes a log from the version before it to its own; a fresh log is created
# at the newest version directly. Version 1 named the algorithm column model_name;
# version 3 adds the one-row table that health checks write to.
SCHEMA_VERSION = 3
_MIGRATIONS: dict[int, str] = {
    2: "ALTER TABLE predictions RENAME COLUMN model_name TO algorithm;",
    3: "CREATE TABLE IF NOT EXISTS log_probe (id INTEGER PRIMARY KEY, probed_at REAL NOT NULL);",
}

_INSERT = (
    "INSERT INTO predictions (id, created_at, algorithm, model_version, "
    + ", ".join(FEATURES)
    + ", predicted_species, confidence) VALUES ("
    + ", ".join("?" * (6 + len(FEATURES)))
    + ")"
)


class LogUnavailable(RuntimeError):
    """The log cannot be written now (a full disk, a file gone, a database down)."""


@dataclass(frozen=True)
class Predictions:
    """What one request predicted: a row of inputs, an id, a species and a confidence each."""

    ids: Sequence[str]
    created_at: float
    algorithm: str
    model_version: str
    rows: Sequence[Sequence[float | int]]  # model inputs, in FEATURES order
    species: Sequence[str]
    confidences: Sequence[float]

    def __len__(self) -> int:
        """Return how many predictions there are."""
        return len(self.ids)


@dataclass(frozen=True)
class Feedback:
    """What a feedback call found: the prediction it labels and whether it was right."""

    prediction_id: str
    algorithm: str
    model_version: str
    predicted_species: str
    actual_species: str
    first: bool  # the prediction's first label; a later one corrects it

    @property
    def correct(self) -> bool:
        """Return whether the prediction matched the actual species."""
        return self.predicted_species == self.actual_species


def log_path(uri: str) -> Path:
    """Return the file of a prediction log URI, refusing any other kind of URI."""
    path = sqlite_path(uri)
    if path is None:
        raise ValueError(f"prediction log URI must look like sqlite:///PATH, got {uri!r}")
    return path


class PredictionLog:
    """Append predictions, attach feedback, and read recent windows for monitoring."""

    def __init__(self, uri: str, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        """Open the log at a ``sqlite:///PATH`` URI, creating or migrating it as needed."""
        self.path = log_path(uri)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._inserted = 0
        try:
            with self._lock:
                self._connect()
        except (sqlite3.DatabaseError, OSError) as exc:
            if not self.path.exists():
                raise  # a log that cannot even be created: the URI is wrong
            # An existing log that cannot be opened now (a full disk cannot take its
            # WAL index): start anyway; each write tries again and answers 503 meanwhile.
            _log.warning("prediction log %s not writable yet: %s", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        """Return this process's connection, opening it (and its schema) after a fork."""
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a commit survives a process crash; only a power
                # loss can drop the last transactions, and it costs no fsync per request.
                conn.execute("PRAGMA synchronous=NORMAL")
                _open_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def record_predictions(self, batch: Predictions) -> None:
        """Append one request's predictions in one committed transaction."""
        rows = (
            (pid, batch.created_at, batch.algorithm, batch.model_version, *row, name, confidence)
            for pid, row, name, confidence in zip(
                batch.ids, batch.rows, batch.species, batch.confidences, strict=True
            )
        )  # a generator: SQLite takes one row at a time, none kept in memory
        with self._lock, self._writing():
            conn = self._connect()
            with conn:
                inserted = conn.executemany(_INSERT, rows).rowcount
            self._inserted += inserted
            if self._inserted >= PRUNE_EVERY:
                self._inserted = 0
                self._prune(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write into LogUnavailable, and reconnect on the next one.

        Only faults of the database itself count; a broken constraint is a bug, not
        an outage, and propagates as it is.
        """
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            self._drop_connection()
            raise LogUnavailable(
                f"the prediction log {self.path} cannot be written: {exc}"
            ) from exc

    def _drop_connection(self) -> None:
        """Forget this process's connection, closing it if it still answers."""
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    def probe(self) -> str | None:
        """Write to the log as a prediction would; return why it cannot be written, or None."""
        try:
            with self._lock, self._writing():
                conn = self._connect()
                with conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO log_probe (id, probed_at) VALUES (1, ?)",
                        (time.time(),),
                    )
        except LogUnavailable as exc:
            return str(exc)
        return None

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete all but the newest ``max_rows`` predictions."""
        with conn:
            conn.execute(
                "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - ?",
                (self.max_rows,),
            )

    def attach_feedback(self, prediction_id: str, actual_species: str) -> Feedback | None:
        """Record the actual species of a prediction; return None for an unknown id.

        A later label replaces the earlier one; :attr:`Feedback.first` tells them apart.
        The write lock is taken before reading, so of concurrent labels exactly one is first.
        """
        with self._lock, self._writing():
            conn = self._connect()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    "SELECT algorithm, model_version, predicted_species, feedback_at "
                    "FROM predictions WHERE id = ?",
                    (prediction_id,),
                ).fetchone()
                if row is not None:
                    conn.execute(
                        "UPDATE predictions SET actual_species = ?, feedback_at = ? WHERE id = ?",
                        (actual_species, time.time(), prediction_id),
                    )
        if row is None:
            return None
        return Feedback(prediction_id, row[0], row[1], row[2], actual_species, row[3] is None)

    def recent_inputs(self, limit: int) -> list[tuple]:
        """Return the feature rows of the newest ``limit`` predictions (newest first)."""
        sql = f"SELECT {', '.join(FEATURES)} FROM predictions ORDER BY seq DESC LIMIT ?"
        with self._lock:
            return self._connect().execute(sql, (limit,)).fetchall()

    def recent_labelled(self, limit: int) -> list[tuple[str, str, str, str]]:
        """Return (algorithm, model_version, predicted, actual) of the newest labelled rows."""
        sql = (
            "SELECT algorithm, model_version, predicted_species, actual_species "
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


def _schema_version(conn: sqlite3.Connection) -> int:
    """Return the schema version of the log (0: no table yet), refusing one newer than ours."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'predictions'"
    ).fetchone()
    if exists and version == 0:
        version = 1  # logs from before the schema carried a version
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"prediction log schema version {version} is newer than this code's "
            f"({SCHEMA_VERSION}): upgrade the code or use another log"
        )
    return version


def _open_schema(conn: sqlite3.Connection) -> None:
    """Create the table at the newest version, or migrate an older log forward.

    A log already at the newest version is only read: a worker that starts while the
    disk is full must still start, and answer 503 until the log can be written.
    """
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    with conn:
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it
        version = _schema_version(conn)
        if version:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                    conn.execute(statement)
        for statement in filter(str.strip, _TABLE.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
