"""Fixtures of the traffic unit tests: the data set, settings from flags, a stand-in API."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd
import pytest

from penguins.config import DEFAULT_DATA_PATH, parse_settings
from penguins.features import load_dataset
from penguins.traffic.settings import TrafficSettings
from tests.unit.traffic.fake_api import FakeApi


@pytest.fixture(scope="session")
def data() -> pd.DataFrame:
    """Return the cleaned data set."""
    return load_dataset(DEFAULT_DATA_PATH)


@pytest.fixture
def settings_of() -> Callable[..., TrafficSettings]:
    """Return a function that builds settings from flags alone, whatever the environment."""

    def build(*argv: str, environ: dict[str, str] | None = None) -> TrafficSettings:
        """Parse ``argv`` over the defaults and ``environ`` (empty unless given)."""
        return parse_settings(TrafficSettings, list(argv), "traffic", environ=environ or {})

    return build


@pytest.fixture
def fake_api(request) -> Iterator[FakeApi]:
    """Serve a stand-in for the API; parametrize indirectly with a mode to make it misbehave."""
    api = FakeApi(mode=getattr(request, "param", "contract"))
    yield api
    api.close()
