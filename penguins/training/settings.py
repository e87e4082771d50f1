"""The settings of one training run: the store and model of StoreSettings, plus the data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from penguins.config import DEFAULT_DATA_PATH, StoreSettings, setting


@dataclass(frozen=True)
class TrainingSettings(StoreSettings):
    """What ``python modelling.py`` reads: where the data is and whether to force the alias."""

    FLAG_HELP: ClassVar[dict[str, str]] = {"alias": "alias to move to the new version"}

    data: Path = setting(DEFAULT_DATA_PATH, "penguins CSV", parse=Path)
    force: bool = setting(
        False, "move the alias to the new version even if the current one scores better"
    )
