"""Fixtures and hooks every test shares: the two layers, and lines printed at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stores import TrainedStore, train_into

pytest_plugins = ["tests.support.postgres", "tests.support.mlflow_server"]
INTEGRATION = Path(__file__).parent / "integration"
_SUMMARY = pytest.StashKey[list]()


def pytest_configure(config) -> None:
    """Start the list of lines the run prints at its end."""
    config.stash[_SUMMARY] = []


def pytest_collection_modifyitems(items) -> None:
    """Mark every test under tests/integration as ``integration``: the folder is the layer."""
    for item in items:
        if INTEGRATION in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Print what tests measured (e.g. panel queries answered), even under -q."""
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def summary_line(request):
    """Return a function that adds one line to the summary printed at the end of the run."""
    return request.config.stash[_SUMMARY].append


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> TrainedStore:
    """Train once per session into a temporary store; read-only for tests that share it."""
    return train_into(tmp_path_factory.mktemp("mlflow-store"))
