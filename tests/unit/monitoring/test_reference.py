"""The drift reference while there is no tracking store: nothing to follow, said once."""

from __future__ import annotations

import logging
from pathlib import Path

from penguins.config import sqlite_uri
from penguins.monitoring.reference import ReferenceTracker
from penguins.monitoring.settings import MonitorSettings


def test_a_missing_sqlite_store_is_reported_once_and_not_created(tmp_path: Path, caplog):
    db = tmp_path / "mlflow.db"
    settings = MonitorSettings(tracking_uri=sqlite_uri(db), refresh_seconds=0)
    tracker = ReferenceTracker.of_settings(settings)
    with caplog.at_level(logging.WARNING, logger="penguins.registry"):
        assert tracker.current() is None
        assert tracker.current() is None  # looked up again: refresh_seconds is 0
    assert not db.exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "penguins.registry"]
    assert len(lines) == 1 and f"no tracking store at {db}" in lines[0], lines
