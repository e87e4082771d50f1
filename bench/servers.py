"""The servers under test: how each is started, what it is sent, what its processes use.

Every server is started as users start it, through the process helper the tests share
(a session and a log file of its own; SIGTERM, then SIGKILL for the whole session).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

from bench import BenchError
from penguins.config import DEFAULT_DATA_PATH
from penguins.features import CATEGORICAL_FEATURES, FEATURES, load_dataset
from tests.support.processes import ManagedProcess, free_port, wait_for_http

HOST = "127.0.0.1"
# The venv's console scripts (mlflow, and the uvicorn it execs) sit beside its python.
VENV_BIN = Path(sys.executable).parent
# Health, one-row and batch routes of our API and of `mlflow models serve`.
OUR_ROUTES = ("/health", "/predict", "/predict/batch")
MLFLOW_ROUTES = ("/ping", "/invocations", "/invocations")
# The name MLServer serves the champion under (bench/peers.py writes its model settings).
MLSERVER_MODEL = "penguins-classifier"
_V2 = f"/v2/models/{MLSERVER_MODEL}"
# The routes of each kind of server: ours (this checkout or another), mlflow, the peers.
ROUTES = {
    "ours": OUR_ROUTES,
    "mlflow": MLFLOW_ROUTES,
    "mlserver": (f"{_V2}/ready", f"{_V2}/infer", f"{_V2}/infer"),
    "bentoml": ("/readyz", "/predict", "/predict"),
}


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server, and its kind: a key of :data:`ROUTES` ("ours" for our API)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    kind: str

    @property
    def ours(self) -> bool:
        """Return whether this is our API (of this checkout or another)."""
        return self.kind == "ours"

    @property
    def routes(self) -> tuple[str, str, str]:
        """Return the health, one-row and batch routes."""
        return ROUTES[self.kind]

    def url(self, path: str) -> str:
        """Return the URL of a path on this server."""
        return f"http://{HOST}:{self.port}{path}"


def _env(**extra: str) -> dict[str, str]:
    """Return what a user's shell in the activated venv would add to a server's environment."""
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    # An empty MODEL_URI reads as unset: every server serves the registry's champion.
    return {"MODEL_URI": "", "PATH": path, **extra}


def ours(name: str, checkout: Path, workers: int, **env: str) -> ServerSpec:
    """Return the spec of our API from a checkout, this venv's python running its script.

    ``env`` holds the tracking store, the model and the prediction log, by variable name.
    """
    port = free_port()
    argv = [sys.executable, str(checkout / "ml_serving.py"), "--host", HOST, "--port", str(port)]
    return ServerSpec(name, [*argv, "--workers", str(workers)], _env(**env), port, "ours")


def mlflow_serve(name: str, tracking_uri: str, model: str, workers: int) -> ServerSpec:
    """Return the spec of `mlflow models serve` on a model with a number of workers."""
    port = free_port()
    argv = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local"]
    argv += ["-p", str(port), "--host", HOST, "--workers", str(workers)]
    return ServerSpec(name, argv, _env(MLFLOW_TRACKING_URI=tracking_uri), port, "mlflow")


def rows(n: int) -> pd.DataFrame:
    """Return ``n`` rows of the six features, cycling through the cleaned data set."""
    data = load_dataset(DEFAULT_DATA_PATH)[list(FEATURES)]
    return data.iloc[[i % len(data) for i in range(n)]].reset_index(drop=True)


def v2_request(samples: list[dict]) -> dict:
    """Return an Open Inference Protocol (V2) request: one input per feature column.

    The pandas content type makes MLServer hand the MLflow model a DataFrame whose
    columns are the features, as the model's signature names them.
    """
    inputs = [
        {
            "name": k,
            "shape": [len(samples), 1],
            "datatype": "INT64" if k in CATEGORICAL_FEATURES else "FP64",
            "data": [sample[k] for sample in samples],
        }
        for k in FEATURES
    ]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def body(spec: ServerSpec, frame: pd.DataFrame, batch: bool) -> bytes:
    """Return the JSON body of a one-row (the frame's first) or batch request to a server."""
    samples = [
        {
            k: int(v) if k in CATEGORICAL_FEATURES else float(v)
            for k, v in zip(FEATURES, row, strict=True)
        }
        for row in frame.head(len(frame) if batch else 1).itertuples(index=False)
    ]
    if spec.kind == "mlflow":
        return json.dumps({"dataframe_records": samples}).encode()
    if spec.kind == "mlserver":
        return json.dumps(v2_request(samples)).encode()
    if spec.kind == "bentoml":
        return json.dumps({"records": samples}).encode()
    return json.dumps({"samples": samples} if batch else samples[0]).encode()


def first_output(answer: dict) -> str | None:
    """Return the first value of a V2 answer's first output (the predicted species), or None."""
    outputs = answer.get("outputs") or [{}]
    data = outputs[0].get("data") or [None]
    return data[0]


def species_of(spec: ServerSpec, answer: dict | list) -> str | None:
    """Return the species a one-row answer predicted."""
    if spec.kind == "mlserver":
        return first_output(answer)
    if spec.kind == "bentoml":  # the list of species, one per record
        return answer[0] if answer else None
    if spec.kind == "mlflow":
        return answer.get("predictions", [None])[0]
    return answer.get("predicted_species")


@dataclass
class Server:
    """A started server: its spec, its process, when it was spawned and its cold start."""

    spec: ServerSpec
    process: ManagedProcess
    started: float
    cold_start_s: float


@contextmanager
def running(spec: ServerSpec, log_dir: Path, timeout_s: float = 120.0) -> Iterator[Server]:
    """Start a server, wait for its first 200 (its cold start) and stop it on leaving."""
    # What a server leaves in its temporary folder (mlflow's model download, metric
    # files) goes with the harness's own temporary folder, even if the server is killed.
    tmp = log_dir / f"tmp-{spec.name}"
    tmp.mkdir(exist_ok=True)
    env = {**spec.env, "TMPDIR": str(tmp)}
    started = time.perf_counter()
    process = ManagedProcess(spec.argv, log_dir / f"{spec.name}.log", env, name=spec.name)
    try:
        try:
            wait_for_http(spec.url(spec.routes[0]), timeout=timeout_s, alive=process.alive)
        except TimeoutError as exc:
            raise BenchError(f"{exc}; {spec.name}'s log:\n{process.output(3000)}") from None
        yield Server(spec, process, started, time.perf_counter() - started)
    finally:
        process.stop()


def usage(server: Server) -> dict[str, float]:
    """Return RSS, PSS and USS in MB and CPU seconds, summed over the server's process tree."""
    totals = dict.fromkeys(("rss_mb", "pss_mb", "uss_mb", "cpu_s", "processes"), 0.0)
    try:
        root = psutil.Process(server.process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return totals
    for proc in tree:
        try:
            memory, cpu = proc.memory_full_info(), proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for key in ("rss", "pss", "uss"):
            totals[f"{key}_mb"] += getattr(memory, key) / 2**20
        totals["cpu_s"] += cpu.user + cpu.system
        totals["processes"] += 1
    return totals


def settle(server: Server, timeout_s: float = 90.0, window_s: float = 0.5) -> float:
    """Wait until the tree idles (every worker done loading); return seconds since the spawn.

    The first 200 comes from the first ready worker; the others may still be loading
    the model, and measuring then would charge their start-up to the load runs.
    """
    deadline = time.perf_counter() + timeout_s
    before = usage(server)["cpu_s"]
    while time.perf_counter() < deadline:
        time.sleep(window_s)
        after = usage(server)["cpu_s"]
        if after - before < 0.1 * window_s:
            return time.perf_counter() - server.started - window_s
        before = after
    raise BenchError(f"{server.spec.name} was still busy {timeout_s:.0f} s after its first 200")
