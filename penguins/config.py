"""Project paths and the defaults of the environment variables in CONTRACT.md."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_PATH = PROJECT_DIR / "data" / "penguins.csv"

EXPERIMENT_NAME = "penguins-classification"
DEFAULT_MODEL_NAME = "penguins-classifier"
DEFAULT_MODEL_ALIAS = "champion"


def default_tracking_uri() -> str:
    """Return the tracking store: MLFLOW_TRACKING_URI, else SQLite in the project directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_DIR / 'mlflow.db'}"


def default_prediction_log_uri() -> str:
    """Return the prediction log: PREDICTION_LOG_URI, else SQLite in the project directory."""
    return os.environ.get("PREDICTION_LOG_URI") or f"sqlite:///{PROJECT_DIR / 'predictions.db'}"


def env_str(name: str, default: str) -> str:
    """Return an environment variable, or the default when it is unset or empty."""
    return os.environ.get(name) or default


def env_int(name: str, default: int) -> int:
    """Return an integer environment variable, failing clearly when it is not an integer."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    """Return a float environment variable, failing clearly when it is not a number."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
