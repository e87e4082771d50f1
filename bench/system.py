"""What the figures were measured on: the machine, its load and the package versions."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from datetime import UTC, datetime
from importlib import metadata

import psutil

PACKAGES = (
    "mlflow",
    "scikit-learn",
    "numpy",
    "pandas",
    "flask",
    "gunicorn",
    "uvicorn",
    "fastapi",
    "prometheus-client",
)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's guess."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_version() -> str:
    """Return wrk's version line, or 'missing'."""
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    first = (done.stdout or done.stderr).strip().splitlines()
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer" -> "debian/4.1.0-3+b2"
    words = first[0].split() if first else []
    return words[1] if len(words) > 1 else "unknown"


def machine() -> dict[str, object]:
    """Return the cores, CPU model, memory and current load of this machine."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
    }


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_busy(seconds: float = 1.0) -> float:
    """Return the whole machine's CPU use in percent over the next ``seconds``."""
    return psutil.cpu_percent(interval=seconds)


def busy_cpu_s() -> float:
    """Return the CPU seconds all processes have used since boot, on all cores.

    Interrupt time (our own loopback traffic) and steal are left out; guest time is
    already inside user time on Linux.
    """
    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0)


def children_cpu_s() -> float:
    """Return the CPU seconds of this process's finished and waited-for children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def versions() -> dict[str, str]:
    """Return the Python, package and wrk versions in use."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    out["wrk"] = wrk_version()
    return out


def now() -> str:
    """Return the current UTC time, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
