"""Project paths and the defaults of the environment variables in CONTRACT.md."""

from __future__ import annotations

import argparse
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


def add_store_flags(parser: argparse.ArgumentParser, alias_help: str) -> None:
    """Add --tracking-uri, --model-name and --alias, each defaulting to its environment variable."""
    parser.add_argument(
        "--tracking-uri",
        default=default_tracking_uri(),
        help="MLflow tracking and registry store (default: %(default)s, from "
        "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the project directory)",
    )
    parser.add_argument(
        "--model-name",
        default=env_str("MODEL_NAME", DEFAULT_MODEL_NAME),
        help="registered model (default: %(default)s, from $MODEL_NAME)",
    )
    parser.add_argument(
        "--alias",
        default=env_str("MODEL_ALIAS", DEFAULT_MODEL_ALIAS),
        help=f"{alias_help} (default: %(default)s, from $MODEL_ALIAS)",
    )


def add_prediction_log_flag(parser: argparse.ArgumentParser) -> None:
    """Add --prediction-log-uri, defaulting to PREDICTION_LOG_URI."""
    parser.add_argument(
        "--prediction-log-uri",
        default=default_prediction_log_uri(),
        help="sqlite:///PATH of the prediction log (default: %(default)s, from "
        "$PREDICTION_LOG_URI or predictions.db in the project directory)",
    )


def add_refresh_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """Add --refresh-seconds, defaulting to MODEL_REFRESH_SECONDS."""
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=env_float("MODEL_REFRESH_SECONDS", 30.0),
        help=f"{what}, seconds (default: %(default)s, from $MODEL_REFRESH_SECONDS)",
    )
