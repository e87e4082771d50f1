"""One training from start to end: data, runs, comparison, registration, the alias decision."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import requests
from mlflow import MlflowClient

from penguins.config import EXPERIMENT_NAME
from penguins.features import load_dataset
from penguins.registry import StoreError, connect
from penguins.training.evaluation import SELECTION_RULE, pick_best
from penguins.training.promotion import Promotion, promote
from penguins.training.report import comparison_table, promotion_summary
from penguins.training.settings import TrainingSettings
from penguins.training.tracking import train_all, using_store

# urllib3 says "Retrying (...)" on this logger before MLflow's last attempt; the failure
# that follows is reported on its own, so the retry line only repeats it at length.
RETRY_LOGGER = "urllib3.connectionpool"


def _drop_retries(record: logging.LogRecord) -> bool:
    """Return False for urllib3's retry warning, True for every other record."""
    return not str(record.msg).startswith("Retrying")


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """Keep urllib3's retry warnings out of the log while the block runs, and only then."""
    logger = logging.getLogger(RETRY_LOGGER)
    logger.addFilter(_drop_retries)
    try:
        yield
    finally:
        logger.removeFilter(_drop_retries)


def _causes(exc: BaseException) -> list[BaseException]:
    """Return an exception and the chain of exceptions behind it, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def unreachable_reason(exc: BaseException) -> str | None:
    """Return why no connection to the server was made, or None when one was."""
    chain = _causes(exc)
    # The innermost operating-system error says it best; urllib3's own classes overlap
    # (a refused connection is a kind of connect timeout to urllib3).
    for cause in reversed(chain):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, TimeoutError):
            return "no answer in time"
    if any(isinstance(cause, requests.ConnectionError) for cause in chain):
        return "no connection"
    return None


def connect_for_training(tracking_uri: str) -> MlflowClient:
    """Return a client for the store; raise StoreError in one short line if a server is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return connect(tracking_uri)
    try:
        with quiet_retries():
            return connect(tracking_uri)
    except StoreError as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        raise StoreError(
            f"cannot reach the MLflow tracking server at {tracking_uri}: {reason}; "
            "start it or check --tracking-uri (MLFLOW_TRACKING_URI)"
        ) from exc


def train_and_promote(settings: TrainingSettings, say: Callable[[str], None]) -> Promotion:
    """Train every candidate, show how they compare, register the best and decide on the alias.

    Raises DataError when the data is unusable and StoreError when the store is;
    both are checked before any training starts.
    """
    data = load_dataset(settings.data)
    client = connect_for_training(settings.tracking_uri)
    say(f"data: {settings.data} ({len(data)} usable rows)")
    say(f"tracking: {settings.tracking_uri}, experiment {EXPERIMENT_NAME!r}")
    with using_store(settings.tracking_uri):
        results, split_ = train_all(data, settings.data, settings.tracking_uri, say)
        best = pick_best(results)
        say(f"\n{comparison_table(results, best)}\n")
        say(f"selection rule: {SELECTION_RULE}")
        say(f"best: {best.candidate.name} (run {best.run_id})")
        outcome = promote(client, best, split_, settings.model_name, settings.alias, settings.force)
    say(promotion_summary(outcome, settings.model_name, settings.alias))
    return outcome
