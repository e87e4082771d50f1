"""What every prediction log back end shares: its records, its errors, its interface, upkeep.

A back end subclasses :class:`PredictionLog`; the API and the exporter see nothing
else. Writes are committed before a call returns, so feedback works at once from
any process and a stopped server loses nothing it answered. A write that the store
cannot take now (a full disk, a database down) raises :class:`LogUnavailable`, and
the next call tries again on a fresh connection.
"""

from __future__ import annotations

import abc
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger("penguins.predlog")

DEFAULT_MAX_ROWS = 1_000_000
# Pruning scans nothing but the primary key; doing it every N inserts keeps it rare.
PRUNE_EVERY = 10_000


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


class PredictionLog(abc.ABC):
    """Append predictions, attach feedback, and read recent windows for monitoring.

    Retention is bounded: the newest ``max_rows`` predictions are kept. With
    ``upkeep_seconds``, each writing process prunes in a thread of its own at that
    interval, off the request path; without it, the writer prunes after every
    ``prune_every`` rows, as scripts expect.
    """

    prune_every = PRUNE_EVERY

    def __init__(self, max_rows: int, upkeep_seconds: float | None) -> None:
        """Keep the retention and upkeep settings; the back end opens its store."""
        self.max_rows = max_rows
        self.upkeep_seconds = upkeep_seconds
        self._inserted = 0
        self._upkeep: Upkeep | None = None

    @abc.abstractmethod
    def record_predictions(self, batch: Predictions) -> None:
        """Append one request's predictions in one committed transaction."""

    @abc.abstractmethod
    def attach_feedback(self, prediction_id: str, actual_species: str) -> Feedback | None:
        """Record the actual species of a prediction; return None for an unknown id.

        A later label replaces the earlier one; :attr:`Feedback.first` tells them
        apart, and of concurrent labels, from any processes, exactly one is first.
        """

    @abc.abstractmethod
    def recent_inputs(self, limit: int) -> list[tuple]:
        """Return the feature rows of the newest ``limit`` predictions (newest first)."""

    @abc.abstractmethod
    def recent_labelled(self, limit: int) -> list[tuple[str, str, str, str]]:
        """Return (algorithm, model_version, predicted, actual) of the newest labelled rows."""

    @abc.abstractmethod
    def probe(self) -> str | None:
        """Write to the log as a prediction would; return why it cannot be written, or None."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop this process's upkeep and close its connection."""

    @abc.abstractmethod
    def _upkeep_round(self, conn: Any) -> Any:
        """Do one round of upkeep on the upkeep thread's connection; return the connection.

        ``conn`` is None on the first round and after a failed one: open a new one. A
        round the store refuses closes its connection and raises LogUnavailable.
        """

    @abc.abstractmethod
    def _upkeep_close(self, conn: Any) -> None:
        """Close the upkeep thread's connection, if it has one (on that thread, as it ends)."""

    def _inserted_rows(self, n: int, prune: Callable[[], None]) -> None:
        """Count rows just written; start the upkeep thread, or ``prune()`` now and then."""
        self._inserted += n
        if self.upkeep_seconds is not None:
            if self._upkeep is None or self._upkeep.pid != os.getpid():
                # Once per process, and only in writers (workers, not the master).
                self._upkeep = Upkeep(self, self.upkeep_seconds)
        elif self._inserted >= self.prune_every:
            self._inserted = 0
            prune()

    def _take_inserted(self) -> bool:
        """Return whether rows were written since the last call, and start counting again."""
        inserted, self._inserted = self._inserted, 0
        return inserted > 0

    def _stop_upkeep(self) -> None:
        """Stop this process's upkeep thread, if it has one."""
        if self._upkeep is not None and self._upkeep.pid == os.getpid():
            self._upkeep.stop()


class Upkeep:
    """A thread of one process that keeps a log at an interval, on a connection of its own.

    Background work stays on a real OS thread: the API's gevent workers patch all
    but threading, so a long prune never stalls the greenlets answering requests.
    The connection lives on the thread alone, so a forked child never touches it.
    """

    def __init__(self, log: PredictionLog, seconds: float) -> None:
        """Start keeping ``log`` every ``seconds``."""
        self.pid = os.getpid()
        self._log, self._seconds = log, seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="predlog-upkeep", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Keep the log until stopped; a round the store refuses is logged and tried again."""
        conn = None
        try:
            while not self._stopped.wait(self._seconds):
                try:
                    conn = self._log._upkeep_round(conn)
                except LogUnavailable as exc:  # a full disk, a database down: retry later
                    _log.debug("prediction log upkeep failed: %s", exc)
                    conn = None
        finally:
            self._log._upkeep_close(conn)

    def stop(self) -> None:
        """Stop the thread and wait for its round to end."""
        self._stopped.set()
        self._thread.join(timeout=5)
