"""Fixtures of the serving unit tests: the API in this process on a tiny fitted pipeline.

Chained settings -> parts (model source, prediction log, metrics) -> app -> client, as
``create_app`` takes them: no MLflow store, no subprocess. The candidate pipelines are
fitted once per session on the training split, as ``modelling.py`` fits them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sklearn.pipeline import Pipeline

from penguins.config import DEFAULT_DATA_PATH, from_env, sqlite_uri
from penguins.features import load_dataset
from penguins.predlog import PredictionLog, open_log
from penguins.registry import ModelDescription
from penguins.serving.app import create_app
from penguins.serving.metrics import ServingMetrics
from penguins.serving.model import ServedModel
from penguins.serving.settings import ServingSettings
from penguins.training.candidates import candidates
from penguins.training.evaluation import score, split

# The algorithm the unit tests serve: the quickest to fit, and mirrored by the fast path.
SERVED_ALGORITHM = "logistic_regression"


class FixedSource:
    """A model source holding one ready-made model (or none) that never moves."""

    def __init__(self, model: ServedModel | None, reason: str | None = None) -> None:
        """Serve ``model``; without one, ``reason`` says why."""
        self.current = model
        self.reason = None if model is not None else reason or "no model given to the test"
        self.started = self.stopped = False

    def start(self) -> None:
        """Note that the app started following its source."""
        self.started = True

    def stop(self) -> None:
        """Note that the app stopped following its source."""
        self.stopped = True


def serving_settings(root: Path, **overrides) -> ServingSettings:
    """Return settings from the defaults alone (no environment), with files under ``root``."""
    values = {
        # Never opened: the tests hand the app its model, so no store is looked up.
        "tracking_uri": sqlite_uri(root / "no-store" / "mlflow.db"),
        "prediction_log_uri": sqlite_uri(root / "predictions.db"),
        "refresh_seconds": 0.0,
        **overrides,
    }
    return from_env(ServingSettings, environ={}, **values)


@pytest.fixture(scope="session")
def data() -> pd.DataFrame:
    """Return the cleaned data set."""
    return load_dataset(DEFAULT_DATA_PATH)


@pytest.fixture(scope="session")
def training(data):
    """Return the training/test split modelling.py fits and scores on."""
    return split(data)


@pytest.fixture(scope="session")
def fitted(training) -> dict[str, Pipeline]:
    """Fit every candidate pipeline on the training split, once per session."""
    return {c.name: c.build().fit(training.x_train, training.y_train) for c in candidates()}


@pytest.fixture(scope="session")
def description(fitted, training) -> ModelDescription:
    """Describe the served pipeline as the registry would: version 1 of the champion."""
    metrics = score(fitted[SERVED_ALGORITHM], training.x_test, training.y_test)
    return ModelDescription(
        "penguins-classifier", "1", "champion", "run-1", SERVED_ALGORITHM, metrics
    )


@pytest.fixture(scope="session")
def served_model(fitted, description) -> ServedModel:
    """Return the served model (immutable, so shared by every test)."""
    uri = from_env(ServingSettings, environ={}).served_uri
    return ServedModel.build(fitted[SERVED_ALGORITHM], description, uri)


@pytest.fixture
def settings(tmp_path) -> ServingSettings:
    """Return the settings of the app under test."""
    return serving_settings(tmp_path)


@pytest.fixture
def models(served_model) -> FixedSource:
    """Return the model source of the app under test."""
    return FixedSource(served_model)


@pytest.fixture
def predlog(settings) -> Iterator[PredictionLog]:
    """Return the prediction log of the app under test, in the test's own folder."""
    log = open_log(settings.prediction_log_uri, max_rows=settings.prediction_log_max_rows)
    yield log
    log.close()


@pytest.fixture
def metrics() -> ServingMetrics:
    """Return the metrics of the app under test, on a registry of its own."""
    return ServingMetrics(CollectorRegistry())


@pytest.fixture
def registry(metrics) -> CollectorRegistry:
    """Return the registry the app's metrics live on."""
    return metrics.registry


@pytest.fixture
def app(settings, models, predlog, metrics) -> Iterator[Flask]:
    """Return the API serving the fitted pipeline."""
    app = create_app(settings, models=models, predlog=predlog, metrics=metrics)
    yield app
    app.extensions["penguins"].close()


@pytest.fixture
def client(app) -> FlaskClient:
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def make_app(tmp_path, served_model) -> Iterator[Callable[..., Flask]]:
    """Return a factory of apps with settings of their own, each with fresh parts."""
    apps: list[Flask] = []

    def make(models: FixedSource | None = None, **overrides) -> Flask:
        """Build an app; keyword arguments override its settings."""
        root = tmp_path / f"app-{len(apps)}"
        settings = serving_settings(root, **overrides)
        log = open_log(settings.prediction_log_uri, max_rows=settings.prediction_log_max_rows)
        app = create_app(
            settings,
            models=models if models is not None else FixedSource(served_model),
            predlog=log,
            metrics=ServingMetrics(CollectorRegistry()),
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["penguins"].close()
