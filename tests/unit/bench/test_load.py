"""Reading wrk's figures and writing its lua script."""

from __future__ import annotations

import pytest

from bench import BenchError
from bench.load import MARKER, check, lua_script, parse_wrk_output

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
    assert result["requests"] == 16540
    assert result["duration_s"] == pytest.approx(5.0007)
    assert result["rps"] == pytest.approx(16540 / 5.0007)
    assert (result["p50_ms"], result["p90_ms"], result["p99_ms"]) == (2.25, 3.1, 5.9)
    assert (result["mean_ms"], result["max_ms"]) == (2.4105, 14.02)
    assert result["non_2xx"] == result["socket_errors"] == 0
    assert check(result, "ours c=8") is result


def test_status_and_socket_errors_are_counted_and_fail_the_check():
    line = (
        f'{MARKER}{{"requests": 10, "duration_us": 1000000, "bytes": 1, "errors": '
        '{"connect": 1, "read": 2, "write": 0, "status": 4, "timeout": 3}, "latency_us": '
        '{"mean": 1, "max": 1, "p50": 1, "p90": 1, "p99": 1}}'
    )
    result = parse_wrk_output(line)
    assert (result["non_2xx"], result["socket_errors"]) == (4, 6)
    with pytest.raises(BenchError, match="ours c=8: 10 requests, 4 non-2xx"):
        check(result, "ours c=8")


def test_a_run_without_requests_fails_the_check():
    line = (
        f'{MARKER}{{"requests": 0, "duration_us": 0, "bytes": 0, "errors": {{"connect": 0, '
        '"read": 0, "write": 0, "status": 0, "timeout": 0}, "latency_us": '
        '{"mean": 0, "max": 0, "p50": 0, "p90": 0, "p99": 0}}'
    )
    result = parse_wrk_output(line)
    assert result["rps"] == 0.0
    with pytest.raises(BenchError, match="0 requests"):
        check(result, "ours c=1")


def test_a_run_without_the_figures_line_is_an_error():
    with pytest.raises(BenchError, match="BENCH_JSON"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_script_posts_the_body_verbatim_and_reports_when_done():
    body = '{"bill_length_mm": 39.1, "note": "it\'s \\"quoted\\""}'
    script = lua_script(body)
    assert 'wrk.method = "POST"' in script
    assert f"[==[{body}]==]" in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert "done = function(summary, latency, requests)" in script
    assert MARKER in script
