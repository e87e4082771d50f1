"""HTTP load with wrk: the lua script that POSTs one JSON body, running wrk, reading its figures."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bench import BenchError

# wrk's done() hook prints one line starting with this marker, then the figures as JSON.
MARKER = "BENCH_JSON "

# Latencies are microseconds in wrk; percentiles are read in done() so that nothing
# depends on the layout of wrk's human-readable report.
_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
    "MARKER", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
""".replace("MARKER", MARKER)


def lua_script(body: str, content_type: str = "application/json") -> str:
    """Return a wrk lua script that POSTs ``body`` and prints its figures as JSON when done."""
    # A long bracket with a level that cannot occur in JSON keeps the body verbatim.
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{body}]==]\n"
        f'wrk.headers["Content-Type"] = "{content_type}"\n' + _DONE
    )


def parse_wrk_output(stdout: str) -> dict[str, float]:
    """Read the figures printed by the done() hook out of wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise BenchError(f"wrk printed no {MARKER.strip()} line:\n{stdout.strip()[-2000:]}")
    errors, latency = data["errors"], data["latency_us"]
    duration_s = data["duration_us"] / 1e6
    return {
        "requests": data["requests"],
        "duration_s": duration_s,
        "rps": data["requests"] / duration_s if duration_s else 0.0,
        **{f"{key}_ms": latency[key] / 1000 for key in ("p50", "p90", "p99", "mean", "max")},
        # wrk counts answers with a status above 399; 3xx never answers a POST here.
        "non_2xx": errors["status"],
        "socket_errors": sum(errors[key] for key in ("connect", "read", "write", "timeout")),
    }


def check(result: dict[str, float], label: str) -> dict[str, float]:
    """Raise BenchError when a run saw failed answers or socket errors, else return it."""
    if result["non_2xx"] or result["socket_errors"] or not result["requests"]:
        raise BenchError(
            f"{label}: {result['requests']} requests, {result['non_2xx']} non-2xx answers, "
            f"{result['socket_errors']} socket errors"
        )
    return result


def wrk_binary() -> str:
    """Return the path of wrk, or raise BenchError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: apt-get install wrk")
    return path


def run_wrk(
    url: str, script: Path, connections: int, duration_s: float, threads: int = 1, label: str = ""
) -> dict[str, float]:
    """Run wrk against ``url`` and return its figures, raising BenchError on any failure."""
    threads = max(1, min(threads, connections))
    command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s"]
    command += ["--timeout", "10s", "--latency", "-s", str(script), url]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return check(parse_wrk_output(done.stdout), label or url)
