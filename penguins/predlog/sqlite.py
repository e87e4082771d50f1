"""The prediction log in an SQLite file: ``sqlite:///PATH``, the default, on one machine.

SQLite in WAL mode, so several server processes write at once and readers (the
exporter) never block them. Writers queue on a ``flock`` (:class:`WriteLock`) and
insert with raw ``sqlite3`` statements of many rows each: the hot path of the API,
benchmarked. The schema carries a version (SQLite's ``user_version``); a log written
by an earlier version is migrated forward on open.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from penguins.config import sqlite_path
from penguins.features import FEATURES
from penguins.predlog.base import (
    DEFAULT_MAX_ROWS,
    Feedback,
    LogUnavailable,
    PredictionLog,
    Predictions,
)
from penguins.predlog.schema import SCHEMA_VERSION, WRITTEN_COLUMNS, create_statements

_log = logging.getLogger(__name__)

# Each step takes a log from the version before it to its own; a fresh log is created
# at the newest version directly, and every step ends with the schema's CREATE ... IF
# NOT EXISTS statements, which add what a step only needs to create.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE predictions RENAME COLUMN model_name TO algorithm",),
    3: (),  # the log_probe table
}

_WIDTH = len(WRITTEN_COLUMNS)  # parameters per row
# Rows per INSERT statement: one statement binds them all (SQLite takes at most 32,766
# parameters), which costs about a quarter less than stepping a statement per row.
CHUNK_ROWS = 2_000


@functools.lru_cache(maxsize=64)
def _insert(rows: int) -> str:
    """Return the INSERT of ``rows`` predictions, their parameters in one flat sequence."""
    values = ", ".join(itertools.repeat("(" + ", ".join("?" * _WIDTH) + ")", rows))
    return f"INSERT INTO predictions ({', '.join(WRITTEN_COLUMNS)}) VALUES {values}"


# With upkeep in the background, a committing request still checkpoints once the WAL
# reaches this many pages (64 MiB): the bound should the upkeep thread fall behind.
UPKEEP_WAL_PAGES = 16_384


class WriteLock:
    """The log's writers, across processes, one at a time, in the order they ask.

    SQLite lets one writer in at a time and makes the others retry with sleeps that
    grow to 100 ms while the lock is taken again and again: between two busy
    workers, one request could wait hundreds of milliseconds, and a gevent worker
    waits with all its connections. An exclusive ``flock`` on ``PATH.lock``, held around
    each write transaction, queues the writers in the kernel instead, which wakes the
    next one as soon as the lock is free. Each process opens its own descriptor: a
    lock is shared by everyone holding the same open file. Pruning stays outside it.
    """

    def __init__(self, path: Path) -> None:
        """Prepare the lock of the log at ``path``; nothing is opened until it is taken."""
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None
        self._pid = -1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the length of the block."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close this process's descriptor of the lock file."""
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None


def _parameters(batch: Predictions) -> list:
    """Return the INSERT parameters of a batch, row after row, laid out a column at a time.

    Slice assignment fills each column in C, and refuses a column of the wrong length.
    """
    n, params = len(batch), [None] * (_WIDTH * len(batch))
    params[0::_WIDTH] = batch.ids
    params[1::_WIDTH] = itertools.repeat(batch.created_at, n)
    params[2::_WIDTH] = itertools.repeat(batch.algorithm, n)
    params[3::_WIDTH] = itertools.repeat(batch.model_version, n)
    columns = zip(*batch.rows, strict=True) if n else ()
    for offset, column in enumerate(columns, start=4):
        params[offset::_WIDTH] = column
    params[_WIDTH - 2 :: _WIDTH] = batch.species
    params[_WIDTH - 1 :: _WIDTH] = batch.confidences
    return params


def log_path(uri: str) -> Path:
    """Return the file of a prediction log URI, refusing any other kind of URI."""
    path = sqlite_path(uri)
    if path is None:
        raise ValueError(f"prediction log URI must look like sqlite:///PATH, got {uri!r}")
    return path


class SqliteLog(PredictionLog):
    """The prediction log in one SQLite file, shared by the processes of one machine."""

    def __init__(
        self, uri: str, max_rows: int = DEFAULT_MAX_ROWS, *, upkeep_seconds: float | None = None
    ) -> None:
        """Open the log at a ``sqlite:///PATH`` URI, creating or migrating it as needed.

        With ``upkeep_seconds``, each writing process prunes and checkpoints the log in a
        thread of its own at that interval, off the request path: a request then pays
        for its insert alone, not for a prune or for SQLite copying the WAL back into
        the database (a checkpoint, with its fsync). Without it, the writer prunes after
        every ``prune_every`` rows and SQLite checkpoints on commit, as scripts expect.
        """
        super().__init__(max_rows, upkeep_seconds)
        self.path = log_path(uri)
        self._lock = threading.Lock()
        self._writers = WriteLock(self.path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
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
                if self.upkeep_seconds is not None:
                    conn.execute(f"PRAGMA wal_autocheckpoint={UPKEEP_WAL_PAGES}")
                _open_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def record_predictions(self, batch: Predictions) -> None:
        """Append one request's predictions in one committed transaction."""
        params = _parameters(batch)
        with self._lock, self._writing():
            conn = self._connect()
            with self._writers.held(), conn:
                for start in range(0, len(batch), CHUNK_ROWS):
                    rows = min(CHUNK_ROWS, len(batch) - start)
                    conn.execute(_insert(rows), params[start * _WIDTH : (start + rows) * _WIDTH])
            self._inserted_rows(len(batch), lambda: self._prune(conn))

    def upkeep(self, conn: sqlite3.Connection) -> None:
        """Prune if this process wrote since the last upkeep, then checkpoint what it can."""
        if self._take_inserted():
            self._prune(conn)
        # PASSIVE: copy what no reader still needs, waiting for no one.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _upkeep_round(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        """Keep the log on the upkeep thread's connection, opened again after a failure."""
        try:
            conn = conn or sqlite3.connect(self.path, timeout=30)
            self.upkeep(conn)
        except sqlite3.Error as exc:  # a full disk, a file gone: the next round retries
            self._upkeep_close(conn)
            raise LogUnavailable(f"the prediction log {self.path} cannot be kept: {exc}") from exc
        return conn

    def _upkeep_close(self, conn: sqlite3.Connection | None) -> None:
        """Close the upkeep thread's connection."""
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

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
                with self._writers.held(), conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO log_probe (id, probed_at) VALUES (1, ?)",
                        (time.time(),),
                    )
        except LogUnavailable as exc:
            return str(exc)
        return None

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete all but the newest ``max_rows`` predictions.

        Outside the writers' queue (see WriteLock): pruning waits with SQLite's backoff,
        so the requests' inserts go first, and the prune takes what it lagged behind in
        its next round. Queued with them, a prune of a full log held every insert of
        the machine for its whole length (1,000-row batches at 1M rows: 0.44-0.61x the
        empty log's speed, against 0.92-1.09x).
        """
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
            with self._writers.held(), conn:
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
        """Stop this process's upkeep and close its connection."""
        self._stop_upkeep()
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._writers.close()


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
    """Create the tables at the newest version, or migrate an older log forward.

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
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
        for statement in create_statements("sqlite"):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
