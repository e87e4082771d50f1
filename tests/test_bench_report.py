"""The benchmark's pure parts: reading wrk's output and writing the report from figures."""

from __future__ import annotations

import copy

import pytest

from bench import profile, report
from bench.load import MARKER, LoadError, WrkResult, check, lua_script, parse_wrk_output

WRK_STDOUT = """Running 5s test @ http://127.0.0.1:40123/predict
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms  812.05us  14.02ms   88.31%
  Latency Distribution
     50%    2.25ms
     99%    5.90ms
  16540 requests in 5.00s, 5.12MB read
Requests/sec:   3307.55
BENCH_JSON {"requests": 16540, "duration_us": 5000700, "bytes": 5368709, \
"errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, \
"latency_us": {"mean": 2410.5, "max": 14020, "p50": 2250, "p90": 3100, "p99": 5900}}
"""


def test_wrk_figures_are_read_from_the_done_hook_line():
    result = parse_wrk_output(WRK_STDOUT)
    assert result.requests == 16540
    assert result.duration_s == pytest.approx(5.0007)
    assert result.rps == pytest.approx(16540 / 5.0007)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (2.25, 3.1, 5.9)
    assert result.non_2xx == result.socket_errors == 0


def test_status_and_socket_errors_are_counted_and_fail_the_check():
    line = (
        f'{MARKER}{{"requests": 10, "duration_us": 1000000, "bytes": 1, "errors": '
        '{"connect": 1, "read": 2, "write": 0, "status": 4, "timeout": 3}, "latency_us": '
        '{"mean": 1, "max": 1, "p50": 1, "p90": 1, "p99": 1}}'
    )
    result = parse_wrk_output(line)
    assert (result.non_2xx, result.socket_errors) == (4, 6)
    with pytest.raises(LoadError, match="4 non-2xx"):
        check(result, "ours c=8")


def test_a_run_without_the_figures_line_is_an_error():
    with pytest.raises(LoadError, match="BENCH_JSON"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_script_posts_the_body_verbatim_and_reports_when_done():
    body = '{"bill_length_mm": 39.1, "note": "it\'s \\"quoted\\""}'
    script = lua_script(body)
    assert 'wrk.method = "POST"' in script
    assert f"[==[{body}]==]" in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert "done = function(summary, latency, requests)" in script


def _runs(rps: float, p50: float) -> list[dict]:
    """Two wrk runs around the given figures, as the suite stores them."""
    return [
        {
            **WrkResult(100, 1.0, rps * k, p50 * k, p50, p50 * 2, p50, p50 * 3, 0, 0).as_dict(),
            "cpu_ms_per_request": 1000 / rps,
        }
        for k in (0.9, 1.1)
    ]


FIGURES = {
    "date": "2026-01-02 03:04 UTC",
    "machine": {"cpu": "Test CPU", "cores": 2, "memory_gb": 24.0, "os": "Linux"},
    "versions": {"python": "3.11.7", "mlflow": "3.17.2", "wrk": "4.1"},
    "load_before": [0.1, 0.2, 0.3],
    "load_after": [1.0, 0.5, 0.4],
    "settings": {
        "duration_s": 5.0,
        "repeats": 2,
        "connections": [1, 8],
        "workers": 2,
        "wrk_threads": 1,
        "sizes": [1, 1000],
    },
    "training_s": 12.5,
    "model": {"uri": "models:/penguins-classifier@champion", "version": "3", "algorithm": "svm"},
    "inprocess_ms": {
        "pipeline": {"1": 2.0, "1000": 4.0},
        "fast": {"1": 0.05, "1000": 0.5},
    },
    "cold_start_s": {"ours": 3.0, "mlflow": 9.0, "mlflow-1w": 8.0},
    "load": {
        "ours": {"1": _runs(1000, 2.2), "8": _runs(3000, 2.5)},
        "mlflow": {"1": _runs(20, 50.0), "8": _runs(100, 80.0)},
        "mlflow-1w": {"1": _runs(90, 10.0), "8": _runs(150, 50.0)},
    },
    "runs": [
        {"order": 1, "server": "ours", "connections": 1, **_runs(1000, 2.2)[0]},
        {"order": 2, "server": "mlflow", "connections": 1, **_runs(20, 50.0)[0]},
    ],
    "batch": {"rows": 10000, "ours": [0.05, 0.04, 0.06], "mlflow": [0.1, 0.1, 0.1]},
    "metrics_scrape_ms": [1.0, 2.0, 3.0],
    "profile": {
        "predict": {
            "what": "one-row /predict, wrk at 1 connection",
            "rate": "400 req/s",
            "samples": 1000,
            "busy_samples": 900,
            "seconds": 8,
            "buckets": {"model: predict_proba": 60.0, "gunicorn: sockets": 40.0},
            "own_code": [["predict (penguins/api.py)", 95.0]],
        },
        "batch": {},
    },
    "memory": {
        "ours": {"rss_mb": 500.0, "pss_mb": 300.0, "uss_mb": 250.0, "processes": 3},
        "mlflow": {"rss_mb": 900.0, "pss_mb": 650.0, "uss_mb": 600.0, "processes": 5},
    },
}


def test_targets_are_judged_on_the_medians():
    verdicts = {t.name: (t.measured, t.met) for t in report.targets(FIGURES)}
    assert verdicts["req/s at 8 connections vs mlflow serve (2 workers)"] == ("30.0x", True)
    assert verdicts["req/s at 8 connections vs mlflow serve (1 worker)"] == ("20.0x", True)
    # p50 2.2 ms against the in-process pipeline's 2.0 ms + 0.5 ms.
    assert verdicts["one-row p50 at 1 connection"] == ("2.20 ms", True)
    assert verdicts["10,000-row /predict/batch, end to end"] == ("200,000 rows/s", False)
    assert verdicts["`python modelling.py` wall time"] == ("12.5 s", True)
    assert verdicts["serving tree PSS, 2 workers, warm"] == ("300 MB", True)
    assert verdicts["`/metrics` scrape, median"] == ("2.00 ms", True)


def test_markdown_holds_every_section_figure_and_ratio():
    text = report.markdown(FIGURES)
    for heading in ("## Targets", "## One-row requests", "## In-process predict_proba"):
        assert heading in text
    assert "6 of 7 measured targets met" in text
    assert "| 8 | 3,000 | 100 | 150 | 30.0x | 20.0x |" in text
    assert "| 1 | 2.000 | 0.050 | 40.0x | 500 | 20,000 |" in text
    assert "| 10,000-row batch, rows/s | 200,000 | 100,000 | n/a |" in text
    assert "| process tree PSS, warm, MB | 300 | 650 | n/a |" in text
    assert "| process tree PSS after the 10,000-row batches, MB | n/a | n/a | n/a |" in text
    assert "Test CPU, 2 cores" in text
    assert "0.10, 0.20, 0.30 / 1.00, 0.50, 0.40" in text
    assert "| 8 | 0.33 | 10.00 | 6.67 |" in text  # CPU ms per request
    assert "| model: predict_proba | 60.0 % |" in text
    assert "| `predict (penguins/api.py)` | 95.0 % |" in text
    assert "### one-row /predict, wrk at 1 connection" in text
    assert "**missed**" in text
    assert "benchmarks.png" in text


def test_missing_figures_read_as_not_measured():
    figures = copy.deepcopy(FIGURES)
    del figures["load"]["ours"], figures["cold_start_s"]["ours"], figures["metrics_scrape_ms"]
    found = {t.name: t for t in report.targets(figures)}
    assert found["req/s at 8 connections vs mlflow serve (2 workers)"].met is None
    assert found["`/metrics` scrape, median"].verdict == "not measured"
    text = report.markdown(figures)
    assert "ours (2 workers)" not in text.split("## One-row requests")[1].split("##")[0]


def test_summary_prints_figures_ratios_and_targets():
    text = report.summary(FIGURES)
    assert "ours/mlflow 30.0x" in text
    assert "missed" in text


def test_chart_is_a_png(tmp_path):
    path = tmp_path / "chart.png"
    report.chart(FIGURES, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


FOLDED = """\
process 1:"python ml_serving.py";<module> (ml_serving.py:9);Arbiter.run (gunicorn/arbiter.py:1) 50
process 1:"m";process 2:"w";SyncWorker.handle (gunicorn/workers/sync.py:1);\
wsgi_app (flask/app.py:1);predict (penguins/api.py:3);predict_proba (penguins/fastpath.py:5) 30
process 1:"m";process 2:"w";SyncWorker.handle (gunicorn/workers/sync.py:1);\
wsgi_app (flask/app.py:1);predict (penguins/api.py:3);record (penguins/predlog.py:7);\
execute (sqlite3/dbapi2.py:1) 10
process 1:"m";process 2:"w";SyncWorker.handle (gunicorn/workers/sync.py:1);\
Request.parse (gunicorn/http/message.py:2) 5
process 1:"m";process 2:"w";SyncWorker.handle (gunicorn/workers/sync.py:1);\
wsgi_app (flask/app.py:1);predict (penguins/api.py:3);uuid4 (uuid.py:9) 5
"""


def test_profile_breakdown_counts_only_request_samples_once_each():
    found = profile.breakdown(profile.parse_folded(FOLDED))
    assert (found["samples"], found["busy_samples"]) == (100, 50)
    assert found["buckets"] == {
        "model: predict_proba": 60.0,
        "prediction log (SQLite)": 20.0,
        "gunicorn: sockets, HTTP parsing, worker loop": 10.0,
        # Flask is further up this stack, but the time is spent in our code's uuid4 call.
        "our API code (penguins/, stdlib it calls)": 10.0,
    }
    assert found["own_code"] == [
        ("predict (penguins/api.py)", 90.0),
        ("predict_proba (penguins/fastpath.py)", 60.0),
        ("record (penguins/predlog.py)", 20.0),
    ]


def test_runs_slowed_by_other_work_are_flagged():
    assert report.busy_note(FIGURES) is None
    figures = copy.deepcopy(FIGURES)
    figures["runs"][1]["other_cpu_pct"] = 45.0
    figures["runs"][0]["other_cpu_pct"] = 2.0
    note = report.busy_note(figures)
    assert note is not None and "1 of 2 wrk runs" in note and "up to 45 %" in note
    assert note in report.markdown(figures)
