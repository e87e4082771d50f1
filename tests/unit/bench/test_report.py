"""The report: one table of every figure per server, with ratios and targets; the chart."""

from __future__ import annotations

import copy

from bench import report


def _runs(rps: float, p50: float) -> list[dict]:
    """Two wrk runs around the given figures, as the suite stores them."""
    return [
        {
            "requests": 100,
            "duration_s": 1.0,
            "rps": rps * k,
            "p50_ms": p50 * k,
            "p90_ms": p50,
            "p99_ms": p50 * 2,
            "mean_ms": p50,
            "max_ms": p50 * 3,
            "non_2xx": 0,
            "socket_errors": 0,
            "cpu_ms_per_request": 1000 / rps,
        }
        for k in (0.9, 1.1)
    ]


FIGURES = {
    "date": "2026-01-02 03:04 UTC",
    "machine": {"cpu": "Test CPU", "cores": 2, "memory_gb": 24.0, "os": "Linux"},
    "versions": {"python": "3.11.7", "mlflow": "3.17.2", "wrk": "4.1"},
    "commit": "d2bec33",
    "load_before": [0.1, 0.2, 0.3],
    "load_after": [1.0, 0.5, 0.4],
    "cpu_busy_before": 3.0,
    "cpu_busy_after": 0.0,
    "settings": {
        "duration_s": 5.0,
        "repeats": 2,
        "connections": [1, 8],
        "workers": 2,
        "wrk_threads": 1,
    },
    "sizes": [1, 1000],
    "batch_rows": 10_000,
    "training_s": 12.5,
    "model": {"uri": "models:/penguins-classifier@champion", "version": "3", "algorithm": "svm"},
    "inprocess_ms": {
        "pipeline": {"1": 2.0, "1000": 4.0},
        "fast": {"1": 0.05, "1000": 0.5},
    },
    "servers": {
        "ours": {
            "cold_start_s": 3.0,
            "load": {"1": _runs(1000, 2.2), "8": _runs(3000, 2.5)},
            "batch_s": [0.05, 0.04, 0.06],
            "metrics_scrape_ms": [1.0, 2.0, 3.0],
            "memory": {"rss_mb": 500.0, "pss_mb": 300.0, "uss_mb": 250.0, "processes": 3},
        },
        "mlflow": {
            "cold_start_s": 9.0,
            "load": {"1": _runs(20, 50.0), "8": _runs(100, 80.0)},
            "batch_s": [0.1, 0.1, 0.1],
            "memory": {"rss_mb": 900.0, "pss_mb": 650.0, "uss_mb": 600.0, "processes": 5},
        },
        "mlflow-1w": {
            "cold_start_s": 8.0,
            "load": {"1": _runs(90, 10.0), "8": _runs(150, 50.0)},
        },
    },
    "profile": {
        "predict": {
            "what": "one-row /predict, wrk at 1 connection",
            "rate": "400 req/s",
            "samples": 1000,
            "busy_samples": 900,
            "seconds": 8,
            "buckets": {"model: predict_proba": 60.0, "gunicorn: sockets": 40.0},
            "own_code": [["predict (penguins/serving/endpoints.py)", 95.0]],
        },
        "batch": {},
    },
}


def _table(figures: dict) -> dict[str, list[str]]:
    """Return the report's table as cells by row name, the header under ""."""
    header, rows = report.comparison(figures)
    return {"": header[1:], **{row[0]: row[1:] for row in rows}}


def test_targets_are_judged_on_the_medians():
    goals = report.goals(FIGURES)
    assert goals["one-row req/s, 8 conn."] == (">= 10x each mlflow serve", True)  # 30x, 20x
    # p50 2.2 ms against the in-process pipeline's 2.0 ms + 0.5 ms.
    assert goals["one-row p50, ms, 1 conn."] == (
        "<= in-process pipeline + 0.5 ms = 2.50 ms",
        True,
    )
    assert goals["10,000-row batch, rows/s"] == (">= 250,000 rows/s", False)  # 200,000
    assert goals["`python modelling.py` wall time, s"] == ("<= 20 s", True)  # 12.5 s
    assert goals["process tree PSS, warm, MB"] == ("<= 400 MB (2 workers)", True)  # 300 MB
    assert goals["`/metrics` scrape, median, ms"] == ("<= 5 ms", True)  # 2 ms
    assert len(goals) == 6


def test_the_request_rate_goal_holds_against_each_mlflow_server():
    figures = copy.deepcopy(FIGURES)
    figures["servers"]["mlflow-1w"]["load"]["8"] = _runs(400, 50.0)  # ours is 7.5x that
    assert report.goals(figures)["one-row req/s, 8 conn."].met is False
    del figures["servers"]["mlflow-1w"]  # judged on the one that ran
    assert report.goals(figures)["one-row req/s, 8 conn."].met is True


def test_every_figure_and_ratio_is_in_the_table():
    table = _table(FIGURES)
    assert table[""] == [
        "ours (2 workers)",
        "mlflow serve (2 workers)",
        "mlflow serve (1 worker)",
        "ours / mlflow serve (2 workers)",
        "ours / mlflow serve (1 worker)",
        "target",
        "result",
    ]
    assert table["one-row req/s, 1 conn."] == ["1,000", "20", "90", "50.0x", "11.1x", "", ""]
    assert table["one-row req/s, 8 conn."][:5] == ["3,000", "100", "150", "30.0x", "20.0x"]
    assert table["one-row p50, ms, 1 conn."][:5] == ["2.20", "50.00", "10.00", "0.04x", "0.22x"]
    assert table["one-row p99, ms, 8 conn."][:3] == ["5.00", "160.00", "100.00"]
    # CPU ms per request.
    assert table["server CPU per request, ms, 8 conn."][:3] == ["0.33", "10.00", "6.67"]
    assert table["10,000-row batch, median s"][:4] == ["0.050", "0.100", "n/a", "0.50x"]
    assert table["10,000-row batch, rows/s"] == [
        "200,000",
        "100,000",
        "n/a",
        "2.00x",
        "n/a",
        ">= 250,000 rows/s",
        "**missed**",
    ]
    # The model as each server runs it: ours the numpy fast path, mlflow the pipeline.
    assert table["the model in process, 1 row, ms"][:4] == ["0.050", "2.000", "2.000", "0.03x"]
    assert table["the model in process, 1,000 rows, ms"][:3] == ["0.500", "4.000", "4.000"]
    assert table["cold start, spawn to first 200, s"][:5] == [
        "3.00",
        "9.00",
        "8.00",
        "0.33x",
        "0.38x",
    ]
    assert table["process tree PSS, warm, MB"][:4] == ["300", "650", "n/a", "0.46x"]
    assert table["process tree PSS, after the 10,000-row batches, MB"][:3] == ["n/a"] * 3
    assert table["processes in the tree"][:4] == ["3", "5", "n/a", "0.60x"]
    assert table["`/metrics` scrape, median, ms"] == ["2.00", *["n/a"] * 4, "<= 5 ms", "met"]
    assert table["`python modelling.py` wall time, s"][0] == "12.5"


def test_markdown_holds_the_table_profile_machine_and_notes():
    text = report.markdown(FIGURES)
    assert "5 of 6 measured targets met" in text
    assert "Our API against mlflow serve (2 workers), mlflow serve (1 worker)" in text
    assert (
        "| one-row req/s, 8 conn. | 3,000 | 100 | 150 | 30.0x | 20.0x "
        "| >= 10x each mlflow serve | met |"
    ) in text
    assert "| model: predict_proba | 60.0 % |" in text
    assert "| `predict (penguins/serving/endpoints.py)` | 95.0 % |" in text
    assert "### one-row /predict, wrk at 1 connection" in text
    assert "Test CPU, 2 cores" in text
    assert "0.10, 0.20, 0.30 / 1.00, 0.50, 0.40" in text
    assert "3 % / 0 %" in text
    assert "ours: d2bec33 and its working tree" in text
    assert "version 3 (svm)" in text
    assert "**missed**" in text
    assert "benchmarks.png" in text
    assert "## How it was measured" in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_missing_figures_read_as_not_measured():
    figures = copy.deepcopy(FIGURES)
    del figures["servers"]["ours"], figures["training_s"], figures["inprocess_ms"]
    del figures["profile"]
    assert all(goal.met is None for goal in report.goals(figures).values())
    table = _table(figures)
    assert "ours (2 workers)" not in table[""]
    assert not any(cell.startswith("ours /") for cell in table[""])
    assert table["one-row req/s, 8 conn."] == [
        "100",
        "150",
        ">= 10x each mlflow serve",
        "not measured",
    ]
    assert table["the model in process, 1 row, ms"] == ["n/a", "n/a", "", ""]
    text = report.markdown(figures)
    assert "0 of 0 measured targets met" in text
    assert "py-spy" not in text.split("## How it was measured")[0]


def test_a_baseline_checkout_gets_its_own_column_and_ratio():
    figures = copy.deepcopy(FIGURES)
    figures["baseline"] = {"path": "/tmp/old", "commit": "c28c42b"}
    figures["servers"]["baseline"] = {
        "load": {"1": _runs(800, 2.2), "8": _runs(2500, 2.5)},
        "batch_s": [0.04, 0.04, 0.04],
        "metrics_scrape_ms": [2.0, 2.0, 2.0],
    }
    table = _table(figures)
    assert table[""][:2] == ["ours (2 workers)", "baseline c28c42b (2 workers)"]
    column = table[""].index("ours / baseline c28c42b (2 workers)")
    assert table["one-row req/s, 8 conn."][column] == "1.20x"
    assert table["10,000-row batch, rows/s"][column] == "0.80x"
    assert table["`/metrics` scrape, median, ms"][column] == "1.00x"
    # Only this checkout's model is timed in process.
    assert table["the model in process, 1 row, ms"][1] == "n/a"
    text = report.markdown(figures)
    assert "baseline: c28c42b at /tmp/old" in text
    assert "Our API against baseline c28c42b (2 workers), mlflow serve" in text
    assert "ours / baseline" in report.summary(figures)


def test_summary_prints_figures_ratios_and_targets():
    text = report.summary(FIGURES)
    row = next(line for line in text.splitlines() if line.startswith("one-row req/s, 8 conn."))
    cells = ["3,000", "100", "150", "30.0x", "20.0x", ">=", "10x", "each", "mlflow", "serve"]
    assert row.split()[4:] == [*cells, "met"]
    assert "ours / mlflow" in text
    assert "**missed**" in text


def test_chart_is_a_png(tmp_path):
    path = tmp_path / "chart.png"
    report.chart(FIGURES, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_profiled_baseline_gets_a_before_and_after_table_in_ms():
    figures = copy.deepcopy(FIGURES)
    figures["baseline"] = {"path": "/tmp/old", "commit": "c89bf47"}
    figures["servers"]["baseline"] = {"batch_s": [0.2, 0.2, 0.2]}
    figures["servers"]["ours"]["batch_s"] = [0.05, 0.05, 0.05]
    batch = {"busy_samples": 100, "buckets": {"log": 60.0, "model": 40.0}, "own_code": []}
    figures["profile"]["batch"] = {**batch, "buckets": {"log": 20.0, "answer": 80.0}}
    figures["profile_baseline"] = {"batch": batch}
    text = report.markdown(figures)
    assert "### Before and after" in text
    assert "| log | 60.0 % | 120.0 | 20.0 % | 10.0 |" in text
    assert "| model | 40.0 % | 80.0 | 0.0 % | 0.0 |" in text
    assert "| answer | 0.0 % | 0.0 | 80.0 % | 40.0 |" in text
    assert "| **the median request, ms** |  | 200.0 |  | 50.0 |" in text
    del figures["profile_baseline"]
    assert "### Before and after" not in report.markdown(figures)


def test_slow_clients_get_a_table_of_their_own_where_they_were_measured():
    assert "## Slow clients" not in report.markdown(FIGURES)
    figures = copy.deepcopy(FIGURES)
    figures["slow_clients"] = {"per_kind": 50, "probes": 10, "timeout_s": 3.0}
    figures["servers"]["ours"]["slow_clients"] = {
        "slow_clients": 100,
        "sent": 10,
        "answered": 10,
        "p50_ms": 1.234,
    }
    figures["servers"]["mlflow"]["slow_clients"] = {
        "slow_clients": 100,
        "sent": 10,
        "answered": 0,
        "p50_ms": None,
    }
    text = report.markdown(figures)
    assert "## Slow clients" in text
    assert "50 connections that send their headers one line a second" in text
    assert "10 one-row requests one after another, each with a 3 s timeout" in text
    assert "| ours (2 workers) | 100 | 10 of 10 | 1.23 |" in text
    assert "| mlflow serve (2 workers) | 100 | 0 of 10 | n/a |" in text
    assert "slow clients held" in report.summary(figures)
