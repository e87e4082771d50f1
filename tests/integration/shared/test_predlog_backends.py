"""The prediction log on every back end: SQLite files and a real PostgreSQL server.

Each behaviour the API and the exporter rely on runs against both, through
``open_log`` alone; what is SQLite's own (WAL, the writers' flock, migrations, a full
disk) is tested in tests/unit/shared/test_predlog.py, and what only a server can do
(being stopped and started again, its query plans, gevent) is tested here on
PostgreSQL.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from penguins.config import sqlite_uri
from penguins.features import FEATURES
from penguins.predlog import LogUnavailable, PredictionLog, Predictions, open_log
from penguins.predlog import postgres as pg_backend
from penguins.predlog.schema import SCHEMA_VERSION
from penguins.serving.ids import new_ids
from tests.support import PROJECT_DIR
from tests.support.postgres import PASSWORD
from tests.support.predlog import logged_count, logged_ids, logged_row

FEATURES_ROW = (39.1, 18.7, 181.0, 3750.0, 0, 1)
FORK = multiprocessing.get_context("fork")
TIMEOUT = 60  # seconds a child process may take


def batch(n: int = 1, version: str = "1", species: str = "Adelie") -> Predictions:
    """Return ``n`` predictions with fresh time-ordered ids, as the API makes them."""
    return Predictions(
        ids=new_ids(n),
        created_at=1.0,
        algorithm="svm",
        model_version=version,
        rows=[FEATURES_ROW] * n,
        species=[species] * n,
        confidences=[0.9] * n,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def log_uri(request, tmp_path) -> str:
    """Return the URI of a fresh, empty log on each back end."""
    if request.param == "sqlite":
        return sqlite_uri(tmp_path / "predictions.db")
    return request.getfixturevalue("postgres_log_uri")


@pytest.fixture
def opened() -> Iterator[Callable[..., PredictionLog]]:
    """Return ``open_log``; every log opened through it is closed after the test."""
    logs: list[PredictionLog] = []

    def open_(uri: str, *args, **kwargs) -> PredictionLog:
        """Open a log and remember to close it."""
        logs.append(open_log(uri, *args, **kwargs))
        return logs[-1]

    yield open_
    for log in logs:
        log.close()


def run_children(target: Callable, args: tuple, n: int) -> list:
    """Run ``target(*args, barrier, queue)`` in ``n`` forked processes at once; return what
    each put on the queue."""
    barrier, queue = FORK.Barrier(n), FORK.Queue()
    children = [FORK.Process(target=target, args=(*args, barrier, queue)) for _ in range(n)]
    for child in children:
        child.start()
    try:
        results = [queue.get(timeout=TIMEOUT) for _ in children]
    finally:
        for child in children:
            child.join(TIMEOUT)
    assert [child.exitcode for child in children] == [0] * n
    return results


# ---- records ---------------------------------------------------------------------


def test_a_record_reads_back_whole_and_takes_feedback_from_another_connection(log_uri, opened):
    writer, reader = opened(log_uri), opened(log_uri)
    rec = batch(version="7", species="Gentoo")
    writer.record_predictions(rec)
    row = logged_row(log_uri, rec.ids[0])
    assert (row["id"], row["algorithm"], row["model_version"]) == (rec.ids[0], "svm", "7")
    assert tuple(row[name] for name in FEATURES) == FEATURES_ROW
    assert (row["predicted_species"], row["confidence"], row["created_at"]) == ("Gentoo", 0.9, 1.0)
    assert row["actual_species"] is None and row["feedback_at"] is None
    found = reader.attach_feedback(rec.ids[0], "Adelie")  # at once, on another connection
    assert found is not None and (found.first, found.correct) == (True, False)
    assert logged_row(log_uri, rec.ids[0])["actual_species"] == "Adelie"


def test_a_batch_of_10k_is_logged_whole_in_order_with_every_value(log_uri, opened):
    n = 10_000
    rows = [(30.0 + i / 1000, 18.7, 181.0 + i % 7, 3750.0, i % 3, i % 2) for i in range(n)]
    rec = Predictions(new_ids(n), 2.5, "svm", "4", rows, ["Gentoo"] * n, [i / n for i in range(n)])
    opened(log_uri).record_predictions(rec)
    assert logged_ids(log_uri) == list(rec.ids)
    for i in (0, 1999, 2000, 4321, n - 1):
        row = logged_row(log_uri, rec.ids[i])
        got = (row["bill_length_mm"], row["flipper_length_mm"], row["island_encoded"])
        assert got == (rows[i][0], rows[i][2], i % 3)
        assert (row["sex_encoded"], row["confidence"], row["created_at"]) == (i % 2, i / n, 2.5)


def test_a_batch_whose_columns_differ_in_length_is_refused_and_nothing_is_logged(log_uri, opened):
    rec = batch(3)
    broken = Predictions(rec.ids, 1.0, "svm", "1", rec.rows, ["Adelie"] * 2, [0.9] * 3)
    log = opened(log_uri)
    with pytest.raises(ValueError):
        log.record_predictions(broken)
    assert logged_count(log_uri) == 0
    log.record_predictions(rec)  # the log goes on as before
    assert logged_count(log_uri) == 3


def test_a_duplicate_id_is_a_bug_not_an_outage(log_uri, opened):
    log = opened(log_uri)
    rec = batch()
    log.record_predictions(rec)
    with pytest.raises(Exception) as raised:
        log.record_predictions(rec)
    assert not isinstance(raised.value, LogUnavailable)
    assert "unique" in str(raised.value).lower()
    log.record_predictions(batch())  # and the connection still works
    assert logged_count(log_uri) == 2


# ---- feedback --------------------------------------------------------------------


def test_a_later_label_corrects_the_first_and_says_it_is_not_first(log_uri, opened):
    log = opened(log_uri)
    rec = batch()
    log.record_predictions(rec)
    first = log.attach_feedback(rec.ids[0], "Gentoo")
    again = log.attach_feedback(rec.ids[0], "Adelie")
    assert (first.first, first.correct, first.prediction_id) == (True, False, rec.ids[0])
    assert (again.first, again.correct) == (False, True)
    assert logged_row(log_uri, rec.ids[0])["actual_species"] == "Adelie"
    assert log.recent_labelled(10) == [("svm", "1", "Adelie", "Adelie")]


@pytest.mark.parametrize("unknown", [str(uuid.uuid4()), "not-a-uuid", ""])
def test_feedback_on_an_unknown_id_returns_none(log_uri, opened, unknown):
    log = opened(log_uri)
    log.record_predictions(batch())
    assert log.attach_feedback(unknown, "Adelie") is None


def _label_all(uri: str, ids: list[str], barrier, queue) -> None:
    """In a child process: label every id, all children starting at once; report firsts."""
    log = open_log(uri)
    try:
        barrier.wait(TIMEOUT)
        queue.put([log.attach_feedback(pid, "Adelie").first for pid in ids])
    finally:
        log.close()


def test_of_two_processes_labelling_at_once_exactly_one_is_first_for_each(log_uri, opened):
    rec = batch(50)
    opened(log_uri).record_predictions(rec)
    firsts = run_children(_label_all, (log_uri, list(rec.ids)), n=2)
    assert [a + b for a, b in zip(*firsts, strict=True)] == [1] * 50
    assert all(logged_row(log_uri, pid)["actual_species"] == "Adelie" for pid in rec.ids)


# ---- windows and retention -------------------------------------------------------


def test_recent_windows_are_newest_first(log_uri, opened):
    log = opened(log_uri)
    first, second = batch(2, version="1"), batch(1, version="2")
    second_row = (50.0, 15.0, 220.0, 5000.0, 1, 0)
    second = Predictions(second.ids, 1.0, "svm", "2", [second_row], ["Adelie"], [0.5])
    log.record_predictions(first)
    log.record_predictions(second)
    log.attach_feedback(first.ids[0], "Adelie")
    log.attach_feedback(second.ids[0], "Gentoo")
    assert log.recent_inputs(2) == [second_row, FEATURES_ROW]
    assert log.recent_inputs(10) == [second_row, FEATURES_ROW, FEATURES_ROW]
    assert log.recent_labelled(10) == [
        ("svm", "2", "Adelie", "Gentoo"),
        ("svm", "1", "Adelie", "Adelie"),
    ]
    assert log.recent_labelled(1) == [("svm", "2", "Adelie", "Gentoo")]


def test_retention_keeps_the_newest_max_rows(log_uri, opened):
    log = opened(log_uri, max_rows=15)
    log.prune_every = 10
    records = [batch() for _ in range(30)]
    for rec in records:
        log.record_predictions(rec)
    assert logged_count(log_uri) == 15
    assert logged_ids(log_uri) == [rec.ids[0] for rec in records[-15:]]


def test_the_upkeep_thread_prunes_off_the_writer_and_stops_with_the_log(log_uri, opened):
    log = opened(log_uri, max_rows=15, upkeep_seconds=0.05)
    records = [batch(5) for _ in range(10)]
    for rec in records:
        log.record_predictions(rec)
    upkeep = log._upkeep
    assert upkeep is not None and upkeep._thread.is_alive()
    deadline = time.monotonic() + 10
    while logged_count(log_uri) != 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged_ids(log_uri) == [pid for rec in records[-3:] for pid in rec.ids]
    log.close()
    assert not upkeep._thread.is_alive()


# ---- processes -------------------------------------------------------------------


def _write_inherited(log: PredictionLog, rec: Predictions, barrier, queue) -> None:
    """In a forked child: write through the log object the parent opened, then close it."""
    try:
        log.record_predictions(rec)
        queue.put("ok")
    finally:
        log.close()


def test_a_forked_child_reopens_the_log_and_leaves_the_parents_connection_alone(log_uri, opened):
    log = opened(log_uri)
    before, in_child, after = batch(), batch(), batch()
    log.record_predictions(before)  # the parent's connection is open as it forks
    assert run_children(_write_inherited, (log, in_child), n=1) == ["ok"]
    log.record_predictions(after)  # no LogUnavailable: the child did not end its session
    assert log.probe() is None
    assert logged_ids(log_uri) == [*before.ids, *in_child.ids, *after.ids]


def _open_and_write(uri: str, barrier, queue) -> None:
    """In a child process: open a log on a store without tables, all at once; write one row."""
    barrier.wait(TIMEOUT)
    log = open_log(uri)
    try:
        log.record_predictions(batch())
        queue.put("ok")
    finally:
        log.close()


def test_several_processes_create_the_tables_at_once(log_uri):
    assert run_children(_open_and_write, (log_uri,), n=6) == ["ok"] * 6
    assert logged_count(log_uri) == 6
    if log_uri.startswith("postgresql://"):
        with psycopg.connect(log_uri) as conn:
            versions = conn.execute("SELECT version FROM log_schema").fetchall()
        assert versions == [(SCHEMA_VERSION,)]


# ---- PostgreSQL: a server that goes away, and comes back -------------------------


def test_a_stopped_database_gives_log_unavailable_at_once_then_recovers(own_postgres, opened):
    postgres = own_postgres
    uri = postgres.create_database("log")
    log = opened(uri, upkeep_seconds=0.05)
    answered = batch()
    log.record_predictions(answered)
    postgres.stop()
    try:
        started = time.monotonic()
        failures = []
        for call in (
            lambda: log.record_predictions(batch()),
            lambda: log.attach_feedback(answered.ids[0], "Adelie"),
            lambda: log.recent_inputs(5),
            lambda: log.recent_labelled(5),
        ):
            with pytest.raises(LogUnavailable) as failed:
                call()
            failures.append(str(failed.value))
        failures.append(log.probe())
        seconds = time.monotonic() - started
    finally:
        postgres.start()
    assert seconds < pg_backend.CONNECT_SECONDS, "a database that is down is found out at once"
    assert "cannot be written" in failures[0] and "cannot be read" in failures[2]
    for message in failures:
        assert PASSWORD not in message and "postgresql://penguins:***@" in message, message
    assert log.probe() is None, "refused at once, so the first call after the restart tries"
    recovered = batch()
    log.record_predictions(recovered)
    assert log.attach_feedback(answered.ids[0], "Gentoo").first
    assert logged_ids(uri) == [*answered.ids, *recovered.ids]


def test_a_database_that_does_not_answer_is_given_up_on_within_the_connect_timeout(opened):
    with socket.socket() as silent:  # takes connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        host, port = silent.getsockname()
        started = time.monotonic()
        log = opened(f"postgresql://penguins:{PASSWORD}@{host}:{port}/log")
        opening = time.monotonic() - started
        started = time.monotonic()
        problem = log.probe()  # within RECONNECT_SECONDS of the failure: at once
        at_once = time.monotonic() - started
    assert opening < pg_backend.CONNECT_SECONDS + 2 and at_once < 0.5
    assert "connection timeout expired" in problem and PASSWORD not in problem


def test_a_wrong_password_is_never_shown(postgres_log_uri, opened, caplog):
    wrong = "not-the-password-7f3a"
    uri = postgres_log_uri.replace(PASSWORD, wrong)
    log = opened(uri)
    problem = log.probe()
    assert "password authentication failed" in problem
    with pytest.raises(LogUnavailable) as failed:
        log.record_predictions(batch())
    for text in (problem, str(failed.value), caplog.text):
        assert wrong not in text and PASSWORD not in text
    assert "postgresql://penguins:***@" in problem


def test_a_log_from_newer_code_is_refused_with_a_clear_message(postgres_log_uri, opened):
    opened(postgres_log_uri)
    with psycopg.connect(postgres_log_uri, autocommit=True) as conn:
        conn.execute("UPDATE log_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this code"):
        open_log(postgres_log_uri)


def _plan_nodes(plan: dict) -> Iterator[str]:
    """Yield the node types of an EXPLAIN (FORMAT JSON) plan, depth first."""
    yield plan["Node Type"]
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_the_recent_windows_read_an_index_not_the_table(postgres_log_uri, opened):
    log = opened(postgres_log_uri)
    for _ in range(5):
        rec = batch(10_000)
        log.record_predictions(rec)
        for pid in rec.ids[:200]:
            log.attach_feedback(pid, "Adelie")
    with psycopg.connect(postgres_log_uri, autocommit=True) as conn:
        conn.execute("ANALYZE predictions")
        for sql in (pg_backend._RECENT_INPUTS, pg_backend._RECENT_LABELLED):
            explained = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", (500,)).fetchone()[0]
            nodes = list(_plan_nodes(explained[0]["Plan"]))
            assert nodes[0] == "Limit" and nodes[1] == "Index Scan", (sql, nodes)
            assert "Seq Scan" not in nodes and "Sort" not in nodes, (sql, nodes)


_GREENLETS = textwrap.dedent(
    """
    import json, sys, time
    from gevent import monkey
    monkey.patch_all(thread=False)  # as the API's gunicorn worker does
    import gevent
    from penguins.predlog import Predictions, open_log
    from penguins.serving.ids import new_ids

    log = open_log(sys.argv[1], upkeep_seconds=0.05)  # its thread prunes as it would
    ticks = []

    def tick():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.002)

    def work():
        for _ in range(10):
            ids = new_ids(300)
            rows = [(39.1, 18.7, 181.0, 3750.0, 0, 1)] * 300
            log.record_predictions(Predictions(ids, 1.0, "svm", "1", rows, ["Adelie"] * 300,
                                               [0.9] * 300))
            assert log.attach_feedback(ids[0], "Adelie").first
            assert log.probe() is None and len(log.recent_inputs(10)) == 10

    ticker = gevent.spawn(tick)
    workers = [gevent.spawn(work) for _ in range(8)]
    gevent.joinall(workers, timeout=60)
    ticker.kill()
    log.close()
    print(json.dumps({"ok": all(g.successful() for g in workers), "ticks": len(ticks)}))
    """
)


def test_greenlets_share_the_connection_under_gevent(postgres_log_uri):
    done = subprocess.run(
        [sys.executable, "-c", _GREENLETS, postgres_log_uri],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["ok"], done.stderr
    # psycopg waited cooperatively: the ticker ran while the workers waited for the server.
    assert result["ticks"] > 10, result
    assert logged_count(postgres_log_uri) == 8 * 10 * 300  # every greenlet's every batch
