"""The prediction log, as the API relies on it: durable at once, readable from anywhere."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid

import pytest

from penguins import predlog
from penguins.predlog import PredictionLog, PredictionRecord, path_from_uri


def record(version: str = "1", species: str = "Adelie") -> PredictionRecord:
    """Return one prediction record with a fresh id."""
    features = (39.1, 18.7, 181.0, 3750.0, 0, 1)
    return PredictionRecord(str(uuid.uuid4()), 1.0, "svm", version, features, species, 0.9)


@pytest.fixture
def log_uri(tmp_path) -> str:
    """Return the URI of a fresh log."""
    return f"sqlite:///{tmp_path / 'predictions.db'}"


def test_a_record_is_visible_to_another_connection_at_once(log_uri):
    writer, reader = PredictionLog(log_uri), PredictionLog(log_uri)
    rec = record()
    writer.record([rec])
    assert reader.get(rec.id)["predicted_species"] == "Adelie"
    found = reader.attach_feedback(rec.id, "Gentoo")
    assert found is not None and found.correct is False
    assert writer.get(rec.id)["actual_species"] == "Gentoo"


def test_unknown_feedback_returns_none(log_uri):
    assert PredictionLog(log_uri).attach_feedback(str(uuid.uuid4()), "Adelie") is None


def test_retention_keeps_the_newest_max_rows(log_uri, monkeypatch):
    monkeypatch.setattr(predlog, "PRUNE_EVERY", 10)
    log = PredictionLog(log_uri, max_rows=15)
    records = [record() for _ in range(30)]
    for rec in records:
        log.record([rec])
    assert log.count() == 15
    assert log.get(records[-1].id) is not None
    assert log.get(records[0].id) is None


def test_committed_rows_survive_without_close(log_uri):
    log = PredictionLog(log_uri)
    log.record([record() for _ in range(5)])
    # A fresh plain connection, as after a process stop, sees every committed row.
    with contextlib.closing(sqlite3.connect(path_from_uri(log_uri))) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 5


@pytest.mark.parametrize("uri", ["predictions.db", "sqlite://", "postgres://x/y"])
def test_only_sqlite_file_uris_are_accepted(uri):
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        path_from_uri(uri)
