"""Fixtures of the training unit tests: the data set, its split, the candidates fitted on it."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from penguins.config import DEFAULT_DATA_PATH
from penguins.features import load_dataset
from penguins.training.candidates import candidates
from penguins.training.evaluation import Split, split


@pytest.fixture(scope="session")
def data() -> pd.DataFrame:
    """Return the cleaned data set."""
    return load_dataset(DEFAULT_DATA_PATH)


@pytest.fixture(scope="session")
def parts(data) -> Split:
    """Return the split every candidate is trained and tested on."""
    return split(data)


@pytest.fixture(scope="session")
def fitted(parts) -> dict[str, Pipeline]:
    """Return every candidate fitted on the training part, by name (read-only)."""
    return {c.name: c.build().fit(parts.x_train, parts.y_train) for c in candidates()}
