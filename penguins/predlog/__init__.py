"""The prediction log: every prediction with its inputs, and the ground truth fed back later.

:func:`open_log` opens the log a ``PREDICTION_LOG_URI`` names, behind one interface
(:class:`PredictionLog`):

- ``sqlite:///PATH``: a file on this machine (``sqlite.py``), the default;
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``: a database that servers on many
  machines share (``postgres.py``).

Both hold the same tables, defined once in ``schema.py``. Each write is committed
before the API answers, so feedback works at once from any worker and a stopped
server loses nothing it answered. Retention is bounded: the newest ``max_rows``
predictions are kept. The log owns its columns: writers hand it :class:`Predictions`,
readers get plain rows from the ``recent_*`` methods.
"""

from __future__ import annotations

from penguins.config import redact_uri, sqlite_path
from penguins.predlog.base import (
    DEFAULT_MAX_ROWS,
    PRUNE_EVERY,
    Feedback,
    LogUnavailable,
    PredictionLog,
    Predictions,
)
from penguins.predlog.schema import SCHEMA_VERSION
from penguins.predlog.sqlite import SqliteLog, log_path

URI_FORMS = "sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB"


def open_log(
    uri: str, max_rows: int = DEFAULT_MAX_ROWS, *, upkeep_seconds: float | None = None
) -> PredictionLog:
    """Open the prediction log at ``uri``, choosing its back end by the URI's scheme.

    ``upkeep_seconds`` moves pruning (and SQLite's checkpoints) to a thread of each
    writing process, at that interval; without it, writers prune as they go.
    """
    if sqlite_path(uri) is not None:
        return SqliteLog(uri, max_rows, upkeep_seconds=upkeep_seconds)
    if uri.startswith("postgresql://"):
        # Imported here: psycopg then chooses its way of waiting after gevent has
        # patched the API's workers (cooperative), and SQLite users never load it.
        from penguins.predlog.postgres import PostgresLog

        return PostgresLog(uri, max_rows, upkeep_seconds=upkeep_seconds)
    raise ValueError(f"prediction log URI must be {URI_FORMS}, got {redact_uri(uri)!r}")


__all__ = [
    "DEFAULT_MAX_ROWS",
    "PRUNE_EVERY",
    "SCHEMA_VERSION",
    "URI_FORMS",
    "Feedback",
    "LogUnavailable",
    "PredictionLog",
    "Predictions",
    "SqliteLog",
    "log_path",
    "open_log",
]
