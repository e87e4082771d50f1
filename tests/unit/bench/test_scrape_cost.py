"""The scrape-cost benchmark on a small log (the 1M-row figures are in the docs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import scrape_cost
from penguins.config import DEFAULT_DATA_PATH, sqlite_uri
from penguins.features import load_dataset
from penguins.predlog import open_log
from tests.support.predlog import logged_count


def test_scrape_cost_benchmark_reports_every_log_size(tmp_path: Path, capsys):
    picture = tmp_path / "cost.png"
    argv = ["--rows", "20000", "--checkpoints", "2", "--scrapes", "3", "--plot", str(picture)]
    assert scrape_cost.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["10,000", "20,000"]
    assert all(0 < float(r[1]) < 1000 for r in rows)
    assert "log file at 20,000 rows" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_log_sizes_are_spaced_by_factors_of_ten_down_to_one_chunk():
    assert scrape_cost.checkpoints(1_000_000, 4) == [10_000, 100_000, 1_000_000]
    assert scrape_cost.checkpoints(20_000, 2) == [10_000, 20_000]
    assert scrape_cost.checkpoints(25_000, 1) == [25_000]


def test_the_log_is_filled_through_the_api_s_code_with_a_share_labelled(tmp_path: Path):
    uri = sqlite_uri(tmp_path / "predictions.db")
    log = open_log(uri, max_rows=100_000)
    data = load_dataset(DEFAULT_DATA_PATH)
    scrape_cost.fill(log, data, 12_000, 0.25, np.random.default_rng(0))
    labelled = log.recent_labelled(100_000)
    log.close()
    assert logged_count(uri) == 12_000
    assert 0.2 < len(labelled) / 12_000 < 0.3
    assert all(
        algorithm == "random_forest" and version == "1" for algorithm, version, *_ in labelled
    )
    assert all(predicted == actual for *_, predicted, actual in labelled)


def test_bad_arguments_are_refused(capsys):
    for argv in (["--rows", "10"], ["--scrapes", "0"], ["--label-share", "2"]):
        try:
            scrape_cost.parse_args(argv)
        except SystemExit as exited:
            assert exited.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "need --rows >= 10000" in capsys.readouterr().err
