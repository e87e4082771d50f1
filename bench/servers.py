"""Start, time, measure and stop the two servers: our API and `mlflow models serve`.

Each server runs in a session of its own, so stopping it reaches every worker it
forked (signal the process group: TERM, then KILL after a grace period), and a
Ctrl-C in the terminal goes to the harness, whose ``finally`` stops them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from penguins.config import PROJECT_DIR

HOST = "127.0.0.1"
# The venv's console scripts (mlflow, and the uvicorn it execs) sit beside its python.
VENV_BIN = Path(sys.executable).parent


class ServerError(RuntimeError):
    """A server exited or never answered its health check."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and where it answers."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    health_path: str
    predict_path: str
    batch_path: str

    def url(self, path: str) -> str:
        """Return the URL of a path on this server."""
        return f"http://{HOST}:{self.port}{path}"


@dataclass
class Server:
    """A started server: its process, its log and its cold start."""

    spec: ServerSpec
    process: subprocess.Popen
    log_path: Path
    started: float = 0.0
    cold_start_s: float = float("nan")
    pids: set[int] = field(default_factory=set)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _env(tracking_uri: str, **extra: str) -> dict[str, str]:
    """Return the environment a user's shell would give a server in the activated venv."""
    env = dict(os.environ)
    env.pop("MODEL_URI", None)  # both serve the registry's champion, as users start them
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def ours(tracking_uri: str, workers: int, prediction_log: Path) -> ServerSpec:
    """Return the spec of our API started as users start it."""
    port = free_port()
    command = [sys.executable, str(PROJECT_DIR / "ml_serving.py")]
    command += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    return ServerSpec(
        name="ours",
        command=command,
        env=_env(tracking_uri, PREDICTION_LOG_URI=f"sqlite:///{prediction_log}"),
        port=port,
        health_path="/health",
        predict_path="/predict",
        batch_path="/predict/batch",
    )


def mlflow_serve(
    tracking_uri: str, workers: int, model_uri: str, name: str = "mlflow"
) -> ServerSpec:
    """Return the spec of `mlflow models serve` on a model with a number of workers."""
    port = free_port()
    command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "-p", str(port), "--host", HOST]
    command += ["--workers", str(workers)]
    return ServerSpec(
        name=name,
        command=command,
        env=_env(tracking_uri),
        port=port,
        health_path="/ping",
        predict_path="/invocations",
        batch_path="/invocations",
    )


def log_tail(path: Path, lines: int = 25) -> str:
    """Return the last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def describe(server: Server) -> str:
    """Say whether a server is still running, which of its processes live, and its log's end."""
    code = server.process.poll()
    state = "running" if code is None else f"exited with {code}"
    alive = []
    for proc in tree(server.process.pid):
        try:
            alive.append(f"{proc.pid} {proc.status()}")
        except psutil.NoSuchProcess:
            continue
    return (
        f"{server.spec.name} (pid {server.process.pid}) {state}; processes: "
        f"{', '.join(alive) or 'none'}; log:\n{log_tail(server.log_path)}"
    )


def wait_ready(server: Server, timeout_s: float) -> float:
    """Poll the health route until it answers 200; return seconds since the spawn."""
    url = server.spec.url(server.spec.health_path)
    deadline = server.started + timeout_s
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{server.spec.name} exited with {server.process.returncode} before answering "
                f"{url}; log:\n{log_tail(server.log_path)}"
            )
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - server.started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise ServerError(
        f"{server.spec.name} did not answer 200 on {url} within {timeout_s:.0f} s; "
        f"log:\n{log_tail(server.log_path)}"
    )


def tree(pid: int) -> list[psutil.Process]:
    """Return a process and all its descendants that are still alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_memory(server: Server) -> dict[str, float]:
    """Return RSS, PSS and USS in MB summed over the server's whole process tree."""
    totals = {"rss_mb": 0.0, "pss_mb": 0.0, "uss_mb": 0.0, "processes": 0}
    for proc in tree(server.process.pid):
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        totals["rss_mb"] += info.rss / 2**20
        totals["pss_mb"] += info.pss / 2**20
        totals["uss_mb"] += info.uss / 2**20
        totals["processes"] += 1
    return totals


def tree_cpu_s(server: Server) -> float:
    """Return the CPU seconds (user + system) used so far by the server's live processes."""
    total = 0.0
    for proc in tree(server.process.pid):
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


def settle(server: Server, timeout_s: float = 90.0, window_s: float = 0.5) -> float:
    """Wait until the tree idles (every worker done loading); return seconds since spawn.

    The first 200 comes from the first ready worker; the others may still be loading
    the model, and measuring then would charge their start-up to the load runs.
    """
    deadline = time.perf_counter() + timeout_s
    before = tree_cpu_s(server)
    while time.perf_counter() < deadline:
        time.sleep(window_s)
        after = tree_cpu_s(server)
        if after - before < 0.1 * window_s:
            return time.perf_counter() - server.started - window_s
        before = after
    raise ServerError(f"{server.spec.name} was still busy {timeout_s:.0f} s after its first 200")


def stop(server: Server, grace_s: float = 10.0) -> None:
    """Stop the server's process group: TERM, then KILL whatever outlives the grace period."""
    proc = server.process
    server.pids.update(p.pid for p in tree(proc.pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # A worker that left the group (none should) is still ours: kill it by its pid.
    for pid in server.pids - {proc.pid}:
        try:
            child = psutil.Process(pid)
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()
        except psutil.NoSuchProcess:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=grace_s)


@contextmanager
def running(spec: ServerSpec, log_dir: Path, timeout_s: float = 120.0) -> Iterator[Server]:
    """Start a server, wait for its first 200 (its cold start) and stop it on exit."""
    log_path = log_dir / f"{spec.name}.log"
    # Whatever a server leaves in its temporary folder (mlflow's model download, metric
    # files) goes with the harness's own temporary folder, even if the server is killed.
    tmp = log_dir / f"tmp-{spec.name}"
    tmp.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            spec.command,
            cwd=PROJECT_DIR,
            env={**spec.env, "TMPDIR": str(tmp)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(spec=spec, process=process, log_path=log_path, started=started)
    try:
        server.cold_start_s = wait_ready(server, timeout_s)
        yield server
    finally:
        stop(server)
