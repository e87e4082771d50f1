"""Fixtures of the monitoring unit tests: the data set drift and the collector are tried on."""

from __future__ import annotations

import pandas as pd
import pytest

from penguins.config import DEFAULT_DATA_PATH
from penguins.features import load_dataset


@pytest.fixture(scope="session")
def data() -> pd.DataFrame:
    """Return the cleaned data set (read-only: tests sample from it)."""
    return load_dataset(DEFAULT_DATA_PATH)
