"""Shared fixtures: one trained MLflow store per test session, in a temporary folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from penguins.config import DEFAULT_MODEL_ALIAS, DEFAULT_MODEL_NAME, PROJECT_DIR
from tests.serving_fixtures import (  # noqa: F401 - fixtures of the prediction API
    app,
    client,
    empty_store,
    make_app,
    metrics_registry,
    serve,
    serving_state,
    store_copy,
)

DATA_PATH = PROJECT_DIR / "data" / "penguins.csv"


_SUMMARY = pytest.StashKey[list]()


def pytest_configure(config) -> None:
    """Start the list of lines the run prints at its end."""
    config.stash[_SUMMARY] = []


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Print what tests measured (e.g. panel queries answered), even under -q."""
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def summary_line(request):
    """Return a function that adds one line to the summary printed at the end of the run."""
    return request.config.stash[_SUMMARY].append


@dataclass(frozen=True)
class TrainedStore:
    """A temporary SQLite tracking store holding a trained champion."""

    root: Path
    tracking_uri: str
    model_name: str = DEFAULT_MODEL_NAME
    alias: str = DEFAULT_MODEL_ALIAS

    @property
    def model_uri(self) -> str:
        """Return the champion's model URI."""
        return f"models:/{self.model_name}@{self.alias}"


def train_into(root: Path, *extra: str) -> TrainedStore:
    """Run modelling.main into a SQLite store under ``root`` and return it."""
    import modelling

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    code = modelling.main(["--tracking-uri", uri, "--data", str(DATA_PATH), *extra])
    assert code == 0, f"training into {uri} failed with exit code {code}"
    return TrainedStore(root=root, tracking_uri=uri)


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> TrainedStore:
    """Train once per session into a temporary store; read-only for tests that share it."""
    return train_into(tmp_path_factory.mktemp("mlflow-store"))
