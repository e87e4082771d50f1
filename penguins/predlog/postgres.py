"""The prediction log in PostgreSQL: ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``.

One database shared by every API server, on one machine or many: a prediction
answered by any of them takes feedback on any other at once, and the exporter
reads them all. Each process holds one connection (psycopg 3, autocommit), opened
again after a fork or a failure; a database that is down is found out within
:data:`CONNECT_SECONDS` (at once when its host refuses), and one that did not answer
is not waited for again for :data:`RECONNECT_SECONDS`. Only faults of the database become
:class:`LogUnavailable` (the API answers 503); a broken constraint or a bad
statement is a bug and propagates as it is.

- A request's predictions are one ``COPY ... FROM STDIN (FORMAT BINARY)``, committed
  when it ends, before the API answers.
- ``seq`` (a BIGINT identity) orders the log and bounds its retention; ``id`` is the
  caller's time-ordered UUIDv7, stored as a native ``uuid``.
- Feedback locks its row (``SELECT ... FOR UPDATE``), so of concurrent labels from
  any processes exactly one is first.
- The tables are created if missing, under ``pg_advisory_xact_lock`` so that several
  processes starting at once create them once; ``log_schema`` records their version.

No message shows the password: the URI is shown through ``redact_uri`` and driver
errors through ``redact``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.string import BytesBinaryDumper

from penguins.config import redact, redact_uri
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

PREFIX = "postgresql://"
# A database that does not answer is reported this fast; the API then answers 503.
CONNECT_SECONDS = 3
# After a connection attempt that failed slowly (a server that does not answer), calls
# fail at once for this long rather than each waiting CONNECT_SECONDS again: a burst of
# requests would queue behind one another's waits. One refused at once (a server that
# is down) costs nothing to repeat, so the next call tries again and finds it back.
RECONNECT_SECONDS = 1.0
SLOW_FAILURE_SECONDS = 0.5
# What a URI does not say itself. Keepalives and the TCP timeout find a server that
# vanished in the middle of a call; the statement timeout bounds one that hangs.
_DEFAULT_PARAMS = {
    "connect_timeout": str(CONNECT_SECONDS),
    "application_name": "penguins-predlog",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "options": "-c statement_timeout=30s",
}
# The database cannot take writes now: it is down, unreachable, restarting, out of
# disk or connections (all OperationalError), the connection is gone, or it is a
# read-only standby after a failover.
_FAULTS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)
# The key of pg_advisory_xact_lock under which processes create or migrate the tables.
_SCHEMA_LOCK = int.from_bytes(b"penguins", "big")
# Steps after version 3, the first PostgreSQL logs were created at, as in sqlite.py.
_MIGRATIONS: dict[int, tuple[str, ...]] = {}

_UUID, _BYTEA = psycopg.postgres.types["uuid"].oid, psycopg.postgres.types["bytea"].oid
_UUID_TEXT = 36  # characters of a canonical UUID: 32 hex digits and 4 dashes
_COPY = f"COPY predictions ({', '.join(WRITTEN_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Deletes in slices, each its own transaction, so that no prune runs into the
# statement timeout or holds many row locks at once.
PRUNE_SLICE = 50_000
_PRUNE = """
DELETE FROM predictions WHERE seq <= LEAST(
    (SELECT max(seq) FROM predictions) - %(keep)s,
    (SELECT min(seq) FROM predictions) + %(slice)s
)"""
_FEEDBACK = """
WITH found AS (
    SELECT seq, algorithm, model_version, predicted_species, feedback_at
    FROM predictions WHERE id = %s FOR UPDATE
)
UPDATE predictions SET actual_species = %s, feedback_at = %s
FROM found WHERE predictions.seq = found.seq
RETURNING found.algorithm, found.model_version, found.predicted_species, found.feedback_at
"""
_PROBE = """
INSERT INTO log_probe (id, probed_at) VALUES (1, %s)
ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at
"""
_RECENT_INPUTS = f"SELECT {', '.join(FEATURES)} FROM predictions ORDER BY seq DESC LIMIT %s"
_RECENT_LABELLED = (
    "SELECT algorithm, model_version, predicted_species, actual_species "
    "FROM predictions WHERE feedback_at IS NOT NULL ORDER BY feedback_at DESC LIMIT %s"
)


class _Down(Exception):
    """The last connection attempt failed a moment ago: fail at once, with its reason."""


def connection_params(uri: str) -> dict[str, Any]:
    """Return psycopg's connection parameters of a ``postgresql://`` URI, with our defaults.

    What the URI says wins (``?connect_timeout=10`` say); a malformed URI is a
    ValueError that shows it without its password.
    """
    if not uri.startswith(PREFIX):
        raise ValueError(f"a PostgreSQL log URI starts with {PREFIX}, got {redact_uri(uri)!r}")
    try:
        given = conninfo_to_dict(uri)
    except psycopg.Error as exc:
        reason = redact(str(exc), uri)
        raise ValueError(f"invalid PostgreSQL URI {redact_uri(uri)!r}: {reason}") from None
    if not re.fullmatch(r"\d+(,\d+)*", str(given.get("port", "5432"))):
        raise ValueError(f"invalid PostgreSQL URI {redact_uri(uri)!r}: the port is not a number")
    return {**_DEFAULT_PARAMS, **given}


def _process_lock() -> Any:
    """Return a lock for this process's connection: gevent's in a gevent worker.

    Once gevent has patched ``select``, psycopg waits for the server cooperatively. A
    thread lock held across such a wait would freeze the whole worker as soon as a
    second greenlet asked for it: the first could never run again to release it.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("select"):
        from gevent.lock import Semaphore

        return Semaphore()
    return threading.Lock()


def _abandon(conn: psycopg.Connection | None) -> None:
    """Let go of a connection inherited through a fork, leaving the parent's session alone.

    Closing it as it is would tell the server, on the socket both processes share,
    that the parent's session ends. The child's copy of the socket is first pointed
    at /dev/null, so the goodbye goes nowhere and only the child's descriptor closes.
    """
    if conn is None or conn.closed:
        return
    with contextlib.suppress(OSError, psycopg.Error):
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, conn.fileno())
        finally:
            os.close(null)
    conn.close()


class PostgresLog(PredictionLog):
    """The prediction log in a PostgreSQL database, shared by any number of servers."""

    def __init__(
        self, uri: str, max_rows: int = DEFAULT_MAX_ROWS, *, upkeep_seconds: float | None = None
    ) -> None:
        """Open the log at a ``postgresql://`` URI, creating its tables if missing.

        A database that is down now does not stop the caller from starting: the
        first call that finds it up creates the tables, and calls until then raise
        LogUnavailable. With ``upkeep_seconds``, each writing process prunes in a
        thread of its own at that interval, off the request path.
        """
        super().__init__(max_rows, upkeep_seconds)
        self._params = connection_params(uri)
        self._uri = uri
        self.where = redact_uri(uri)  # the log as messages show it
        self._lock, self._lock_pid = _process_lock(), os.getpid()
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        self._failure = ""
        self._copy_types: list[int] = []
        try:
            with self._locked(), self._faults("opened"):
                self._connection()
        except LogUnavailable as exc:
            _log.warning("%s; each call tries again", exc)

    # ---- the connection ---------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold this process's lock of the connection (a fresh one after a fork)."""
        if self._lock_pid != os.getpid():  # the parent may have held it as it forked
            self._lock, self._lock_pid = _process_lock(), os.getpid()
        with self._lock:
            yield

    def _connection(self) -> psycopg.Connection:
        """Return this process's connection, opening it (and the tables) if needed."""
        if self._pid != os.getpid():
            _abandon(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() < self._retry_at:
            raise _Down(self._failure)
        started = time.monotonic()
        try:
            conn = psycopg.connect(**self._params, autocommit=True)
        except _FAULTS as exc:
            if time.monotonic() - started > SLOW_FAILURE_SECONDS:
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
                self._failure = self._reason(exc)
            raise
        try:
            _open_schema(conn)
            self._copy_types = _column_types(conn)
            # COPY's ids are bytes for bytea (see _copy_rows); by default psycopg sends
            # those through the DB-API Binary wrapper's dumper, in Python: C's instead.
            conn.adapters.register_dumper(None, BytesBinaryDumper)
        except BaseException:
            conn.close()
            raise
        self._conn, self._retry_at = conn, 0.0
        return conn

    def _reason(self, exc: BaseException) -> str:
        """Return a driver error as one line, without the URI's password."""
        return redact(" ".join(str(exc).split()), self._uri)

    @contextlib.contextmanager
    def _faults(self, action: str) -> Iterator[None]:
        """Turn a database fault into LogUnavailable, and reconnect on the next call."""
        try:
            yield
        except (*_FAULTS, _Down) as exc:
            self._drop_connection()
            raise LogUnavailable(
                f"the prediction log {self.where} cannot be {action}: {self._reason(exc)}"
            ) from exc

    def _drop_connection(self) -> None:
        """Forget this process's connection, closing it if it is still open."""
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    # ---- the interface ----------------------------------------------------------

    def record_predictions(self, batch: Predictions) -> None:
        """Append one request's predictions with one COPY, committed as it ends."""
        rows = _copy_rows(batch)  # built before the lock: other greenlets may go first
        with self._locked(), self._faults("written"):
            conn = self._connection()
            with conn.cursor() as cur, cur.copy(_COPY) as copy:
                copy.set_types(self._copy_types)
                for row in rows:
                    copy.write_row(row)
            self._inserted_rows(len(rows), lambda: self._prune(conn))

    def attach_feedback(self, prediction_id: str, actual_species: str) -> Feedback | None:
        """Record the actual species of a prediction; return None for an unknown id.

        The row is locked before it is read, so of concurrent labels exactly one
        finds it unlabelled: the first. The one statement is its own transaction.
        """
        try:
            key = uuid.UUID(prediction_id)
        except ValueError:
            return None  # no prediction has an id that is not a UUID
        with self._locked(), self._faults("written"):
            found = (
                self._connection().execute(_FEEDBACK, (key, actual_species, time.time())).fetchone()
            )
        if found is None:
            return None
        algorithm, version, predicted, labelled_at = found
        return Feedback(
            prediction_id, algorithm, version, predicted, actual_species, labelled_at is None
        )

    def recent_inputs(self, limit: int) -> list[tuple]:
        """Return the feature rows of the newest ``limit`` predictions (newest first)."""
        with self._locked(), self._faults("read"):
            return self._connection().execute(_RECENT_INPUTS, (limit,)).fetchall()

    def recent_labelled(self, limit: int) -> list[tuple[str, str, str, str]]:
        """Return (algorithm, model_version, predicted, actual) of the newest labelled rows."""
        with self._locked(), self._faults("read"):
            return self._connection().execute(_RECENT_LABELLED, (limit,)).fetchall()

    def probe(self) -> str | None:
        """Write to the log as a prediction would; return why it cannot be written, or None."""
        try:
            with self._locked(), self._faults("written"):
                self._connection().execute(_PROBE, (time.time(),))
        except LogUnavailable as exc:
            return str(exc)
        return None

    def close(self) -> None:
        """Stop this process's upkeep and close its connection."""
        self._stop_upkeep()
        with self._locked():
            if self._pid == os.getpid():
                self._drop_connection()
            else:
                _abandon(self._conn)
            self._conn = None

    # ---- retention --------------------------------------------------------------

    def _prune(self, conn: psycopg.Connection) -> None:
        """Delete all but the newest ``max_rows`` predictions, a slice at a time."""
        params = {"keep": self.max_rows, "slice": PRUNE_SLICE}
        while conn.execute(_PRUNE, params).rowcount > 0:
            pass

    def _upkeep_round(self, conn: psycopg.Connection | None) -> psycopg.Connection | None:
        """Prune on the upkeep thread's connection if this process wrote since the last round."""
        if not self._take_inserted():
            return conn
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(**self._params, autocommit=True)
            self._prune(conn)
        except _FAULTS as exc:
            self._upkeep_close(conn)
            raise LogUnavailable(
                f"the prediction log {self.where} cannot be pruned: {self._reason(exc)}"
            ) from exc
        return conn

    def _upkeep_close(self, conn: psycopg.Connection | None) -> None:
        """Close the upkeep thread's connection."""
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def _copy_rows(batch: Predictions) -> list[tuple]:
    """Return a batch as the rows COPY writes, in WRITTEN_COLUMNS order.

    Each id goes as the 16 bytes of its UUID, which is what binary COPY of a ``uuid``
    column reads: all ids are decoded by one ``bytes.fromhex`` call, where psycopg would
    want a ``uuid.UUID`` object made for each (as long as the rest of the COPY).
    """
    n = len(batch.ids)
    if not len(batch.rows) == len(batch.species) == len(batch.confidences) == n:
        raise ValueError("a batch needs as many rows, species and confidences as ids")
    if n and set(map(len, batch.ids)) != {_UUID_TEXT}:
        raise ValueError("prediction ids must be UUIDs in their canonical 36 characters")
    raw = bytes.fromhex("".join(batch.ids).replace("-", ""))
    ids = [raw[i : i + 16] for i in range(0, 16 * n, 16)]
    columns = zip(*batch.rows, strict=True) if n else ()
    return list(
        zip(
            ids,
            itertools.repeat(batch.created_at, n),
            itertools.repeat(batch.algorithm, n),
            itertools.repeat(batch.model_version, n),
            *columns,
            batch.species,
            batch.confidences,
            strict=True,
        )
    )


def _column_types(conn: psycopg.Connection) -> list[int]:
    """Return the types COPY sends the columns a prediction writes as, from the database's.

    The uuid column is sent as bytes (see _copy_rows): the same 16 bytes on the wire.
    """
    cur = conn.execute(f"SELECT {', '.join(WRITTEN_COLUMNS)} FROM predictions LIMIT 0")
    return [_BYTEA if column.type_code == _UUID else column.type_code for column in cur.description]


def _schema_version(conn: psycopg.Connection) -> int:
    """Return the schema version of the log (0: no tables yet), refusing one newer than ours."""
    if not conn.execute("SELECT to_regclass('log_schema') IS NOT NULL").fetchone()[0]:
        return 0
    version = conn.execute("SELECT max(version) FROM log_schema").fetchone()[0] or 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"prediction log schema version {version} is newer than this code's "
            f"({SCHEMA_VERSION}): upgrade the code or use another log"
        )
    return version


def _open_schema(conn: psycopg.Connection) -> None:
    """Create the tables at the newest version, or migrate older ones forward.

    Processes starting at once queue on an advisory lock held until the transaction
    ends; each looks again once it has the lock, so one creates and the others see it.
    """
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        version = _schema_version(conn)
        if version == SCHEMA_VERSION:
            return
        for step in range(version + 1, SCHEMA_VERSION + 1) if version else ():
            for statement in _MIGRATIONS.get(step, ()):
                conn.execute(statement)
        for statement in create_statements("postgresql"):
            conn.execute(statement)
        conn.execute("DELETE FROM log_schema")
        conn.execute("INSERT INTO log_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
