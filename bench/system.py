"""What the figures were measured on: the machine, its load, the versions and the checkouts."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil

PACKAGES = ("mlflow", "scikit-learn", "numpy", "pandas", "flask", "gunicorn", "uvicorn")
PACKAGES += ("fastapi", "prometheus-client")


def _first_line(argv: list[str], cwd: Path | None = None) -> str:
    """Return the first line a command prints (wrk --version exits 1), or "unknown"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((done.stdout or done.stderr).strip().splitlines() or ["unknown"])[0]


def commit(checkout: Path) -> str:
    """Return the short commit a checkout is at (read only: nothing in it changes)."""
    rev = _first_line(["git", "rev-parse", "--short", "HEAD"], cwd=checkout)
    return rev if rev.isalnum() else "unknown"


def versions() -> dict[str, str]:
    """Return the Python, package and wrk versions in use."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer" -> "debian/4.1.0-3+b2"
    out["wrk"] = (_first_line(["wrk", "--version"]).split() + ["unknown"] * 2)[1]
    return out


def describe(checkout: Path, baseline: Path | None) -> dict[str, object]:
    """Return the date, the machine and its load now, the versions and the commits."""
    cpu = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line]
    found = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu[0].split(":", 1)[1].strip() if cpu else platform.processor() or "unknown",
            "cores": os.cpu_count() or 0,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "os": f"{platform.system()} {platform.release()}",
        },
        "versions": versions(),
        "commit": commit(checkout),
        "load_before": load_average(),
        "cpu_busy_before": cpu_busy(),
    }
    if baseline is not None:
        found["baseline"] = {"path": str(baseline), "commit": commit(baseline)}
    return found


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_busy(seconds: float = 1.0) -> float:
    """Return the whole machine's CPU use in percent over the next ``seconds``."""
    return psutil.cpu_percent(interval=seconds)
