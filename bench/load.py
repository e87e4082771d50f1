"""HTTP load with wrk: the lua script that POSTs one JSON body, running wrk, reading its results."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

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


class LoadError(RuntimeError):
    """wrk failed, printed no figures, or saw errors or non-2xx answers."""


@dataclass(frozen=True)
class WrkResult:
    """The figures of one wrk run."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict[str, float]:
        """Return the figures as a plain dict."""
        return asdict(self)


def lua_script(body: str, content_type: str = "application/json") -> str:
    """Return a wrk lua script that POSTs ``body`` and prints its figures as JSON when done."""
    # A long bracket with a level that cannot occur in JSON keeps the body verbatim.
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{body}]==]\n"
        f'wrk.headers["Content-Type"] = "{content_type}"\n' + _DONE
    )


def parse_wrk_output(stdout: str) -> WrkResult:
    """Read the JSON line printed by the done() hook out of wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise LoadError(f"wrk printed no {MARKER.strip()} line:\n{stdout.strip()[-2000:]}")
    errors = data["errors"]
    latency = data["latency_us"]
    duration_s = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        duration_s=duration_s,
        rps=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        mean_ms=latency["mean"] / 1000,
        max_ms=latency["max"] / 1000,
        # wrk counts answers with a status above 399; 3xx never answers a POST here.
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    )


def check(result: WrkResult, label: str) -> WrkResult:
    """Raise LoadError when a run saw failed answers or socket errors, else return it."""
    if result.non_2xx or result.socket_errors or not result.requests:
        raise LoadError(
            f"{label}: {result.requests} requests, {result.non_2xx} non-2xx answers, "
            f"{result.socket_errors} socket errors"
        )
    return result


def wrk_binary() -> str:
    """Return the path of wrk, or raise LoadError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("wrk is not installed: apt-get install wrk")
    return path


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    duration_s: float,
    threads: int = 1,
    label: str = "",
) -> WrkResult:
    """Run wrk against ``url`` and return its figures, raising LoadError on any failure."""
    threads = max(1, min(threads, connections))
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise LoadError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return check(parse_wrk_output(done.stdout), label or url)
