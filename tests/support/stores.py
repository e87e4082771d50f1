"""Trained MLflow stores for tests: ``python modelling.py`` run in process into a folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from penguins.config import DEFAULT_DATA_PATH, StoreSettings, sqlite_uri

_DEFAULTS = StoreSettings()


@dataclass(frozen=True)
class TrainedStore:
    """A temporary SQLite tracking store holding a trained champion."""

    root: Path
    tracking_uri: str
    model_name: str = _DEFAULTS.model_name
    alias: str = _DEFAULTS.alias

    @property
    def model_uri(self) -> str:
        """Return the champion's model URI."""
        return f"models:/{self.model_name}@{self.alias}"


def train_into(root: Path, *extra: str) -> TrainedStore:
    """Run modelling.main into a SQLite store under ``root`` and return it."""
    import modelling

    root.mkdir(parents=True, exist_ok=True)
    uri = sqlite_uri(root / "mlflow.db")
    code = modelling.main(["--tracking-uri", uri, "--data", str(DEFAULT_DATA_PATH), *extra])
    assert code == 0, f"training into {uri} failed with exit code {code}"
    return TrainedStore(root=root, tracking_uri=uri)


def store_client(tracking_uri: str):
    """Return a client of a tracking store and its registry."""
    from mlflow import MlflowClient  # heavy: only tests that use a store pay for it

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class LogLines(logging.Handler):
    """Keep the messages logged while it is attached (what a training run says)."""

    def __init__(self) -> None:
        """Start with no lines, listening from INFO up."""
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one message."""
        self.lines.append(record.getMessage())
