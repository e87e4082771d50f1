"""Fixtures of the training integration tests: the session's store and one trained twice."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
import pytest

from penguins.config import EXPERIMENT_NAME
from tests.support.stores import LogLines, TrainedStore, store_client, train_into


@pytest.fixture(scope="module")
def client(trained_store):
    """Return a client on the session's trained store (read-only)."""
    return store_client(trained_store.tracking_uri)


@pytest.fixture(scope="module")
def runs(client) -> list:
    """Return the runs of the training experiment in the session's store."""
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


@dataclass(frozen=True)
class Retrained:
    """A store trained twice, and what was seen right after the second training."""

    store: TrainedStore
    versions: list[int]
    alias_version: str
    output: str
    global_store_before: tuple[str, str]
    global_store_after: tuple[str, str]


@contextlib.contextmanager
def _logged() -> Iterator[LogLines]:
    """Collect what is logged at INFO and above in the block (caplog lasts one test only)."""
    root, handler = logging.getLogger(), LogLines()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> Retrained:
    """Train into a new store twice; the promotion tests may add versions to it afterwards."""
    root = tmp_path_factory.mktemp("trained-twice")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    train_into(root)
    with _logged() as second:
        store = train_into(root)
    after = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    client = store_client(store.tracking_uri)
    versions = client.search_model_versions(f"name='{store.model_name}'")
    alias = client.get_model_version_by_alias(store.model_name, store.alias)
    return Retrained(
        store=store,
        versions=sorted(int(v.version) for v in versions),
        alias_version=str(alias.version),
        output="\n".join(second.lines),
        global_store_before=before,
        global_store_after=after,
    )
