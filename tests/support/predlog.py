"""Read a prediction log's SQLite file directly, as an auditor would, to check what it holds."""

from __future__ import annotations

import contextlib
import sqlite3

from penguins.predlog import log_path


def _query(uri: str, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    """Run one query on a fresh connection to the log file."""
    with contextlib.closing(sqlite3.connect(log_path(uri), timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def logged_count(uri: str) -> int:
    """Return how many predictions the log holds."""
    return _query(uri, "SELECT COUNT(*) AS n FROM predictions")[0]["n"]


def logged_row(uri: str, prediction_id: str) -> dict | None:
    """Return one logged prediction as a dict, or None."""
    rows = _query(uri, "SELECT * FROM predictions WHERE id = ?", (prediction_id,))
    return dict(rows[0]) if rows else None


def logged_ids(uri: str) -> list[str]:
    """Return every logged prediction id, oldest first."""
    return [r["id"] for r in _query(uri, "SELECT id FROM predictions ORDER BY seq")]
