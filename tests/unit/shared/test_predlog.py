"""The SQLite prediction log: WAL, the writers' flock, upkeep, migrations, the insert path.

What every back end must do (record, feedback, windows, retention, forks) is tested on
SQLite and PostgreSQL alike in tests/integration/shared/test_predlog_backends.py.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from penguins.predlog import SCHEMA_VERSION, Predictions, log_path, open_log
from penguins.predlog import sqlite as predlog
from tests.support.predlog import logged_count, logged_ids, logged_row

FEATURES_ROW = (39.1, 18.7, 181.0, 3750.0, 0, 1)


def batch(n: int = 1, version: str = "1", species: str = "Adelie") -> Predictions:
    """Return ``n`` predictions with fresh ids."""
    return Predictions(
        ids=[str(uuid.uuid4()) for _ in range(n)],
        created_at=1.0,
        algorithm="svm",
        model_version=version,
        rows=[FEATURES_ROW] * n,
        species=[species] * n,
        confidences=[0.9] * n,
    )


@pytest.fixture
def log_uri(tmp_path) -> str:
    """Return the URI of a fresh log."""
    return f"sqlite:///{tmp_path / 'predictions.db'}"


def test_a_record_is_visible_to_another_connection_at_once(log_uri):
    writer, reader = open_log(log_uri), open_log(log_uri)
    rec = batch()
    writer.record_predictions(rec)
    assert logged_row(log_uri, rec.ids[0])["predicted_species"] == "Adelie"
    found = reader.attach_feedback(rec.ids[0], "Gentoo")
    assert found is not None and found.correct is False
    assert (found.algorithm, found.model_version) == ("svm", "1")
    assert logged_row(log_uri, rec.ids[0])["actual_species"] == "Gentoo"


def test_every_column_holds_what_was_predicted(log_uri):
    rec = batch(version="7", species="Gentoo")
    open_log(log_uri).record_predictions(rec)
    row = logged_row(log_uri, rec.ids[0])
    assert row["algorithm"] == "svm" and row["model_version"] == "7"
    assert (row["bill_length_mm"], row["island_encoded"], row["sex_encoded"]) == (39.1, 0, 1)
    assert row["confidence"] == 0.9 and row["created_at"] == 1.0


def test_a_later_label_replaces_the_first_and_says_it_is_not_first(log_uri):
    log = open_log(log_uri)
    rec = batch()
    log.record_predictions(rec)
    first = log.attach_feedback(rec.ids[0], "Gentoo")
    again = log.attach_feedback(rec.ids[0], "Adelie")
    assert (first.first, first.correct) == (True, False)
    assert (again.first, again.correct) == (False, True)
    assert logged_row(log_uri, rec.ids[0])["actual_species"] == "Adelie"
    assert log.recent_labelled(10) == [("svm", "1", "Adelie", "Adelie")]


def test_of_concurrent_labels_from_several_connections_exactly_one_is_first(log_uri):
    rec = batch()
    open_log(log_uri).record_predictions(rec)
    logs = [open_log(log_uri) for _ in range(4)]
    with ThreadPoolExecutor(20) as pool:
        found = list(
            pool.map(lambda i: logs[i % 4].attach_feedback(rec.ids[0], "Adelie"), range(20))
        )
    assert sum(f.first for f in found) == 1


def test_unknown_feedback_returns_none(log_uri):
    assert open_log(log_uri).attach_feedback(str(uuid.uuid4()), "Adelie") is None


def test_recent_windows_are_newest_first(log_uri):
    log = open_log(log_uri)
    first, second = batch(2, version="1"), batch(1, version="2")
    log.record_predictions(first)
    log.record_predictions(second)
    log.attach_feedback(first.ids[0], "Adelie")
    log.attach_feedback(second.ids[0], "Gentoo")
    assert log.recent_inputs(2) == [FEATURES_ROW, FEATURES_ROW]
    assert log.recent_labelled(10) == [
        ("svm", "2", "Adelie", "Gentoo"),
        ("svm", "1", "Adelie", "Adelie"),
    ]


def test_retention_keeps_the_newest_max_rows(log_uri):
    log = open_log(log_uri, max_rows=15)
    log.prune_every = 10
    records = [batch() for _ in range(30)]
    for rec in records:
        log.record_predictions(rec)
    assert logged_count(log_uri) == 15
    assert logged_row(log_uri, records[-1].ids[0]) is not None
    assert logged_row(log_uri, records[0].ids[0]) is None


def test_committed_rows_survive_without_close(log_uri):
    log = open_log(log_uri)
    log.record_predictions(batch(5))
    # A fresh plain connection, as after a process stop, sees every committed row.
    with contextlib.closing(sqlite3.connect(log_path(log_uri))) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 5


@pytest.mark.parametrize("uri", ["predictions.db", "sqlite://", "postgres://x/y"])
def test_only_sqlite_file_uris_are_accepted(uri):
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        log_path(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "predictions.db",
        "sqlite://",
        "",
        "postgres://user:hunter2@db/log",  # libpq's alias; the documented form is postgresql://
        "postgresql+psycopg://user:hunter2@db/log",  # SQLAlchemy's spelling
        "mysql://user:hunter2@db/log",
    ],
)
def test_open_log_refuses_other_uris_naming_both_forms_without_the_password(uri):
    with pytest.raises(ValueError) as refused:
        open_log(uri)
    message = str(refused.value)
    assert "sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "uri",
    ["postgresql://user:hunter2@db:port/log", "postgresql://user:hunter2@db/log?nonsense=1"],
)
def test_a_malformed_postgresql_uri_is_refused_before_connecting_without_the_password(uri):
    with pytest.raises(ValueError, match="invalid PostgreSQL URI") as refused:
        open_log(uri)
    assert "hunter2" not in str(refused.value) and "user:***@db" in str(refused.value)


# A log as the first version of the schema wrote it: no version mark, the algorithm in
# a column named model_name.
_VERSION_1 = """
CREATE TABLE predictions (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    bill_length_mm REAL NOT NULL, bill_depth_mm REAL NOT NULL,
    flipper_length_mm REAL NOT NULL, body_mass_g REAL NOT NULL,
    island_encoded INTEGER NOT NULL, sex_encoded INTEGER NOT NULL,
    predicted_species TEXT NOT NULL, confidence REAL NOT NULL,
    actual_species TEXT, feedback_at REAL
);
CREATE INDEX predictions_feedback ON predictions (feedback_at) WHERE feedback_at IS NOT NULL;
INSERT INTO predictions VALUES (1, 'old-1', 1.0, 'random_forest', '3', 39.1, 18.7, 181.0,
    3750.0, 0, 1, 'Adelie', 0.8, 'Adelie', 2.0);
INSERT INTO predictions VALUES (2, 'old-2', 1.0, 'random_forest', '3', 39.1, 18.7, 181.0,
    3750.0, 0, 1, 'Adelie', 0.8, NULL, NULL);
"""


def test_a_log_of_the_first_schema_is_migrated_on_open_and_keeps_working(log_uri):
    with contextlib.closing(sqlite3.connect(log_path(log_uri))) as conn:
        conn.executescript(_VERSION_1)
    log = open_log(log_uri)
    assert log.recent_labelled(10) == [("random_forest", "3", "Adelie", "Adelie")]
    found = log.attach_feedback("old-2", "Gentoo")
    assert found is not None and found.algorithm == "random_forest" and not found.correct
    new = batch()
    log.record_predictions(new)
    assert logged_ids(log_uri) == ["old-1", "old-2", new.ids[0]]
    with contextlib.closing(sqlite3.connect(log_path(log_uri))) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    open_log(log_uri)  # opening a migrated log again changes nothing
    assert logged_count(log_uri) == 3


def test_a_log_from_newer_code_is_refused_with_a_clear_message(log_uri):
    open_log(log_uri).close()
    with contextlib.closing(sqlite3.connect(log_path(log_uri))) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this code"):
        open_log(log_uri)


def test_a_batch_longer_than_a_chunk_is_logged_whole_and_in_order(log_uri):
    n = 2 * predlog.CHUNK_ROWS + 7  # two multi-row statements and a remainder
    rows = [(30.0 + i / 1000, 18.7, 181.0, 3750.0, i % 3, i % 2) for i in range(n)]
    rec = Predictions(
        ids=[str(uuid.uuid4()) for _ in range(n)],
        created_at=2.0,
        algorithm="svm",
        model_version="4",
        rows=rows,
        species=["Gentoo"] * n,
        confidences=[i / n for i in range(n)],
    )
    open_log(log_uri).record_predictions(rec)
    assert logged_ids(log_uri) == list(rec.ids)
    for i in (0, predlog.CHUNK_ROWS - 1, predlog.CHUNK_ROWS, n - 1):
        row = logged_row(log_uri, rec.ids[i])
        assert (row["bill_length_mm"], row["island_encoded"], row["sex_encoded"]) == (
            rows[i][0],
            i % 3,
            i % 2,
        )
        assert row["confidence"] == i / n
        assert row["model_version"] == "4"


def test_upkeep_prunes_and_checkpoints_off_the_writer(log_uri):
    log = open_log(log_uri, max_rows=15, upkeep_seconds=3600)  # never on its own
    log.prune_every = 10
    records = [batch(5) for _ in range(10)]
    for rec in records:
        log.record_predictions(rec)
    assert logged_count(log_uri) == 50, "the writer itself never prunes"
    with contextlib.closing(sqlite3.connect(log_path(log_uri))) as conn:
        log.upkeep(conn)
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert logged_count(log_uri) == 15
    assert logged_row(log_uri, records[-1].ids[-1]) is not None
    assert logged_row(log_uri, records[0].ids[0]) is None
    assert (busy, copied) == (0, frames), "upkeep left every frame checkpointed"
    log.close()


def test_a_writer_waits_for_the_write_lock_another_process_holds(log_uri):
    log = open_log(log_uri)
    path = log_path(log_uri)
    done = multiprocessing.get_context("fork").Event()
    release = multiprocessing.get_context("fork").Event()

    def hold() -> None:
        """In another process: take the writers' lock until told to let go."""
        lock = predlog.WriteLock(path)
        with lock.held():
            done.set()
            release.wait(30)

    holder = multiprocessing.get_context("fork").Process(target=hold)
    holder.start()
    try:
        assert done.wait(30)
        writer = threading.Thread(target=log.record_predictions, args=(batch(3),))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive(), "the insert went ahead while another process held the lock"
        assert logged_count(log_uri) == 0
        release.set()
        writer.join(30)
        assert not writer.is_alive() and logged_count(log_uri) == 3
    finally:
        release.set()
        holder.join(30)
        log.close()
    assert (path.parent / (path.name + ".lock")).exists()


def test_the_upkeep_thread_prunes_by_itself_and_stops_with_the_log(log_uri):
    log = open_log(log_uri, max_rows=15, upkeep_seconds=0.05)
    for _ in range(10):
        log.record_predictions(batch(5))
    upkeep = log._upkeep
    assert upkeep is not None and upkeep._thread.is_alive()
    for _ in range(200):  # up to 10 s on a loaded machine
        if logged_count(log_uri) == 15:
            break
        upkeep._stopped.wait(0.05)
    assert logged_count(log_uri) == 15
    log.close()
    assert not upkeep._thread.is_alive()
