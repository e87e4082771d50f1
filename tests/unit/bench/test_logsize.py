"""The log-size stage: prefilled logs, their names and counts, the setting, the report section."""

from __future__ import annotations

import copy
import sqlite3
import time
from pathlib import Path

import pytest

from bench import logsize, report
from bench.settings import BenchSettings
from penguins.config import parse_settings
from penguins.serving.ids import new_ids


def settings(*argv: str) -> BenchSettings:
    """Parse the bench's flags over an empty environment."""
    return parse_settings(BenchSettings, list(argv), "bench", environ={})


@pytest.mark.parametrize(
    ("rows", "label"),
    [(0, "0"), (999, "999"), (100_000, "100k"), (300_000, "300k"), (1_000_000, "1M"),
     (1_500_000, "1500k"), (2_000_000, "2M")],
)  # fmt: skip
def test_sizes_are_named_as_people_say_them(rows, label):
    assert logsize.size_label(rows) == label
    assert logsize.server_name(rows) == f"ours@{label}"


def _column(path: Path, sql: str) -> list:
    """Return the first column of a query on a log file, in seq order."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"{sql} FROM predictions ORDER BY seq")]
    finally:
        conn.close()


def test_prefilled_logs_hold_their_rows_in_time_order(tmp_path, monkeypatch):
    monkeypatch.setattr(logsize, "CHUNK", 400)  # several requests, one of them partial
    said: list[str] = []
    built = logsize.build(tmp_path, [0, 2500, 900], "svm", "7", said.append)
    assert sorted(built) == [900, 2500]  # the empty log is left to the server
    assert len(said) == 2 and all("prefilled a log of" in line for line in said)
    for rows, (path, seconds) in built.items():
        assert path == logsize.log_file(tmp_path, rows) and seconds >= 0
        assert logsize.row_count(path) == rows
        ids, created = _column(path, "SELECT id"), _column(path, "SELECT created_at")
        assert ids == sorted(ids) and len(set(ids)) == rows
        assert created == sorted(created) and created[-1] < time.time()
        assert len(set(created)) == -(-rows // 400)  # one time per request
        assert new_ids(1)[0] > ids[-1]  # what a server writes next comes after them
    # The bigger log extends the smaller one: the same first rows, then more.
    small, big = (_column(built[n][0], "SELECT id") for n in (900, 2500))
    assert big[:900] == small
    assert not list(tmp_path.glob("*-wal"))  # every prefilled log was closed


def test_prefilled_rows_are_data_set_rows_as_the_api_writes_them(tmp_path):
    path, _ = logsize.build(tmp_path, [50], "svm", "7", lambda _: None)[50]
    conn = sqlite3.connect(path)
    try:
        first = conn.execute(
            "SELECT algorithm, model_version, island_encoded, typeof(island_encoded), "
            "typeof(bill_length_mm), predicted_species, confidence, actual_species "
            "FROM predictions ORDER BY seq LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    rows, species = logsize.data_rows()
    assert first[:2] == ("svm", "7") and first[2] == rows[0][4]
    assert first[3:5] == ("integer", "real") and first[5] == species[0]
    assert 0.6 <= first[6] <= 1.0 and first[7] is None


def test_a_log_not_made_yet_counts_zero_rows(tmp_path):
    assert logsize.row_count(tmp_path / "nothing.db") == 0
    assert logsize.build(tmp_path, [0], "svm", "1", lambda _: None) == {}


def test_the_console_line_gives_rows_per_second_and_counts():
    found = {"batch_s": {"1000": [0.01, 0.01], "10000": [0.1]}, "rows_before": 5, "rows_after": 7}
    assert logsize.describe(found) == (
        "1,000-row 100,000 rows/s, 10,000-row 100,000 rows/s; log rows 5 -> 7"
    )


def test_log_sizes_default_by_pace_and_follow_the_flag():
    assert settings().pace.log_sizes == (0, 300_000, 1_000_000)
    assert settings("--quick").pace.log_sizes == (0, 1_000_000)
    assert settings("--quick", "--log-sizes", "0,300000,1000000").pace.log_sizes == (
        0,
        300_000,
        1_000_000,
    )
    assert settings("--log-sizes", "").pace.log_sizes == ()  # no log-size stage


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0,-5", "--log-sizes takes distinct whole numbers of rows"),
        ("0,10,10", "--log-sizes takes distinct whole numbers of rows"),
        ("0,1M", "--log-sizes must be"),
    ],
)
def test_bad_log_sizes_end_with_a_usage_error(value, message, capsys):
    with pytest.raises(SystemExit) as exited:
        settings("--log-sizes", value)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def _log(rows: int, before: int, after: int, s1k: list[float], s10k: list[float]) -> dict:
    """One log's figures as the stage stores them."""
    return {
        "rows": rows,
        "prefill_s": None if rows == 0 else rows / 250_000,
        "rows_before": before,
        "rows_after": after,
        "batch_s": {"1000": s1k, "10000": s10k},
    }


FIGURES = {
    "settings": {"workers": 2, "connections": [1]},
    "log_sizes": {
        "batches": [1000, 10_000],
        "logs": {
            "ours@0": _log(0, 0, 121_000, [0.01] * 4, [0.05] * 4),
            "ours@1M": _log(
                1_000_000, 1_000_000, 1_001_000, [0.011] * 4, [0.05, 0.05, 0.05, 0.075]
            ),
            "ours@300k": _log(300_000, 300_000, 421_000, [0.01] * 4, [0.05] * 4),
        },
    },
}


def test_the_log_size_table_has_a_row_per_log_smallest_first():
    header, lines = report.log_size_table(FIGURES)
    assert header == [
        "prefilled log, rows",
        "server",
        "log rows before / after",
        "prefill, s",
        "1,000-row batch, rows/s",
        "10,000-row batch, rows/s",
        "1,000-row, / empty log",
        "10,000-row, / empty log",
    ]
    assert lines == [
        ["0", "ours@0", "0 / 121,000", "n/a", "100,000", "200,000", "1.00x", "1.00x"],
        ["300,000", "ours@300k", "300,000 / 421,000", "1.2", "100,000", "200,000", "1.00x",
         "1.00x"],
        ["1,000,000", "ours@1M", "1,000,000 / 1,001,000", "4.0", "90,909", "177,778", "0.91x",
         "0.89x"],
    ]  # fmt: skip


def test_the_goal_compares_the_largest_log_with_the_empty_one():
    assert report.log_size_ratios(FIGURES) == pytest.approx({1000: 0.909, 10_000: 0.889}, abs=1e-3)
    goal = report.log_size_goal(FIGURES)
    assert goal.met is True and goal.text.startswith(">= 0.80x the empty log's rows/s")
    slower = copy.deepcopy(FIGURES)
    slower["log_sizes"]["logs"]["ours@1M"]["batch_s"]["10000"] = [0.1] * 4  # 0.5x
    assert report.log_size_goal(slower).met is False
    assert "**missed**" in report.log_size_verdict(slower)
    # A run whose largest log is under 1M rows does not judge the target.
    small = copy.deepcopy(FIGURES)
    del small["log_sizes"]["logs"]["ours@1M"]
    assert report.log_size_goal(small).met is None
    assert report.log_size_goal({}).met is None and report.log_size_ratios({}) == {}


def test_markdown_and_summary_show_the_section_and_count_its_goal():
    text = report.markdown(FIGURES)
    assert "## Batch speed by log size" in text
    assert "| 1,000,000 | ours@1M | 1,000,000 / 1,001,000 | 4.0 | 90,909 | 177,778 |" in text
    assert (
        "1,000,000-row log / empty log: 0.91x (1,000-row batches), 0.89x (10,000-row batches)"
        in text
    )
    assert "1 of 1 measured targets met" in text  # nothing else was measured here
    printed = report.summary(FIGURES)
    assert "batch speed by log size" in printed and "ours@300k" in printed
    assert "## Batch speed by log size" not in report.markdown({})
    assert "batch speed by log size" not in report.summary({})
