"""Read a prediction log's store directly, as an auditor would, to check what it holds.

An SQLite log is read from its file with ``sqlite3``, a PostgreSQL log with psycopg on
a connection of its own: never through the code under test.
"""

from __future__ import annotations

import contextlib
import sqlite3

import psycopg
from psycopg.rows import dict_row

from penguins.predlog import log_path

POSTGRES_PREFIX = "postgresql://"


def _query(uri: str, sql: str, args: tuple = ()) -> list[dict]:
    """Run one query on a fresh connection to the log; ``?`` marks the parameters."""
    if uri.startswith(POSTGRES_PREFIX):
        with psycopg.connect(uri, row_factory=dict_row, connect_timeout=10) as conn:
            rows = conn.execute(sql.replace("?", "%s"), args).fetchall()
        # The log's ids are strings; PostgreSQL keeps them as uuid.
        return [{**row, "id": str(row["id"])} if "id" in row else row for row in rows]
    with contextlib.closing(sqlite3.connect(log_path(uri), timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, args).fetchall()]


def logged_count(uri: str) -> int:
    """Return how many predictions the log holds."""
    return _query(uri, "SELECT COUNT(*) AS n FROM predictions")[0]["n"]


def logged_row(uri: str, prediction_id: str) -> dict | None:
    """Return one logged prediction as a dict, or None."""
    where = "id = ?::uuid" if uri.startswith(POSTGRES_PREFIX) else "id = ?"
    rows = _query(uri, f"SELECT * FROM predictions WHERE {where}", (prediction_id,))
    return rows[0] if rows else None


def logged_ids(uri: str) -> list[str]:
    """Return every logged prediction id, oldest first."""
    return [r["id"] for r in _query(uri, "SELECT id FROM predictions ORDER BY seq")]


def logged_created_at(uri: str) -> dict[str, float]:
    """Return when the server predicted each logged prediction (its created_at), by id."""
    return {r["id"]: r["created_at"] for r in _query(uri, "SELECT id, created_at FROM predictions")}
