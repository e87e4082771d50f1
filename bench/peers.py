"""The peers: MLServer and BentoML serving the champion, each from a virtualenv of its own.

Each peer's pins are a requirements file in bench/peers/. Its virtualenv lives under
bench/.peers/ (ignored by git), named after a hash of the file and the Python version,
so that a changed pin builds a new one and an unchanged one is reused. A peer that
cannot be installed (pip fails, or takes too long) is skipped with the reason, which
the figures and the report carry. Both peers read one local copy of the champion's
MLflow model folder, downloaded once per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from bench import servers
from bench.servers import HOST, ServerSpec
from penguins.config import PROJECT_DIR
from tests.support.processes import free_port

PEERS = ("mlserver", "bentoml")
REQUIREMENTS_DIR = Path(__file__).resolve().parent / "peers"
VENVS_DIR = PROJECT_DIR / "bench" / ".peers"
INSTALL_TIMEOUT_S = 1200.0
READY = ".ready"  # written into a virtualenv once its install finished
# The packages whose installed versions the report shows for each peer.
VERSIONS = ("mlserver", "mlserver-mlflow", "bentoml", "uvloop", "uvicorn", "fastapi")
VERSIONS += ("starlette", "mlflow", "scikit-learn", "skops", "pandas", "numpy")

Say = Callable[[str], None]
# The last line of a Python traceback: the exception's name and message.
_ERROR_LINE = re.compile(r"^\s*[A-Za-z_][\w.]*(Error|Exception): ")


class PeerSkipped(Exception):
    """A peer cannot run; the message says why, in words for the report."""


def requirements(name: str) -> Path:
    """Return the pinned requirements file of a peer."""
    return REQUIREMENTS_DIR / f"{name}.txt"


def venv_key(pins: Path, python: str | None = None) -> str:
    """Return a short hash of a requirements file and the Python version that installs it."""
    digest = hashlib.sha256(f"{python or platform.python_version()}\n".encode())
    digest.update(pins.read_bytes())
    return digest.hexdigest()[:12]


def venv_dir(name: str, root: Path = VENVS_DIR, pins: Path | None = None) -> Path:
    """Return where the peer's virtualenv for its current pins lives."""
    return root / f"{name}-{venv_key(pins or requirements(name))}"


def last_lines(text: str, count: int = 12) -> str:
    """Return the last non-blank lines of a command's output, joined.

    When the last exception line of a traceback (``RuntimeError: ...``) is further up,
    it comes first: a server's shutdown messages often follow the error that ended it.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    tail = lines[-count:]
    errors = [line for line in lines[:-count] if _ERROR_LINE.match(line)]
    if errors:
        tail = [errors[-1], "...", *tail]
    return "\n".join(tail) or "(no output)"


def install_steps(venv: Path, pins: Path) -> list[list[str]]:
    """Return the commands that create a virtualenv and install a requirements file into it."""
    python = str(venv / "bin" / "python")
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(pins)],
    ]


def run_steps(steps: Iterable[list[str]], timeout_s: float) -> None:
    """Run commands in turn within one time budget; raise PeerSkipped with why one failed."""
    deadline = time.monotonic() + timeout_s
    for command in steps:
        shown = " ".join(Path(command[0]).name if i == 0 else a for i, a in enumerate(command))
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PeerSkipped(f"`{shown}` did not finish within {timeout_s:.0f} s") from None
        except OSError as exc:
            raise PeerSkipped(f"`{shown}` could not start: {exc}") from None
        if done.returncode != 0:
            output = last_lines(f"{done.stdout}\n{done.stderr}")
            raise PeerSkipped(f"`{shown}` exited {done.returncode}:\n{output}")


def build(
    name: str,
    root: Path = VENVS_DIR,
    timeout_s: float = INSTALL_TIMEOUT_S,
    say: Say = print,
    pins: Path | None = None,
) -> Path:
    """Return the peer's virtualenv for its pins, installing it first unless it is ready.

    Raises PeerSkipped when it cannot be installed; nothing half-installed is left.
    """
    pins = pins or requirements(name)
    if not pins.is_file():
        raise PeerSkipped(f"no requirements file {pins}")
    venv = venv_dir(name, root, pins)
    if (venv / READY).is_file():
        return venv
    # Older pins' virtualenvs, and a half-made one of these pins, are not reused.
    for stale in root.glob(f"{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    say(f"installing {name} from {pins.name} into {venv} (once per set of pins)")
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        run_steps(install_steps(venv, pins), timeout_s)
    except PeerSkipped:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    (venv / READY).write_text(f"installed from {pins} in {time.perf_counter() - started:.0f} s\n")
    return venv


def installed_versions(venv: Path, packages: Iterable[str] = VERSIONS) -> dict[str, str]:
    """Return the versions of those packages installed in a virtualenv, absent ones left out."""
    script = (
        "import json, sys\nfrom importlib import metadata\nfound = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n        found[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError:\n        pass\n"
        "print(json.dumps(found))\n"
    )
    command = [str(venv / "bin" / "python"), "-c", script, *packages]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return {}


def prepare(
    names: Iterable[str], root: Path = VENVS_DIR, say: Say = print, **build_options
) -> tuple[dict[str, dict], dict[str, str]]:
    """Build the virtualenv of each peer among ``names``.

    Returns what is known of each ready peer (its virtualenv and versions) and the
    reason each other one is skipped, both by name. Names that are no peer are ignored,
    so a run without peers builds nothing.
    """
    ready, skipped = {}, {}
    for name in (n for n in names if n in PEERS):
        try:
            venv = build(name, root, say=say, **build_options)
        except PeerSkipped as exc:
            skipped[name] = f"not installed: {exc}"
            say(f"  {name} skipped: {skipped[name]}")
            continue
        ready[name] = {"venv": str(venv), "versions": installed_versions(venv)}
    return ready, skipped


def download_model(model_uri: str, tracking_uri: str, folder: Path) -> Path:
    """Copy a registered model's MLflow folder (MLmodel, model files) into ``folder``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder))
    except (MlflowException, OSError) as exc:
        raise PeerSkipped(f"{model_uri} could not be downloaded: {exc}") from exc
    if not (folder / "MLmodel").is_file():
        raise PeerSkipped(f"{model_uri} downloaded to {folder} holds no MLmodel file")
    return folder


def _env(venv: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a peer: its virtualenv first on PATH, as if activated."""
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"PATH": path, "VIRTUAL_ENV": str(venv), "PYTHONPATH": "", **extra}


def mlserver(name: str, venv: Path, model_dir: Path, workers: int, folder: Path) -> ServerSpec:
    """Return the spec of `mlserver start` on the model folder, writing its two settings files.

    ``folder`` gets settings.json (free ports on 127.0.0.1, ``workers`` parallel
    inference workers) and, in a folder named after the model as MLServer expects,
    model-settings.json (the MLflow runtime on ``model_dir``).
    """
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    server = {
        "host": HOST,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
        # Both default to folders in the working directory, which is the project's.
        "metrics_dir": str(folder / ".metrics"),
        "environments_dir": str(folder / ".envs"),
    }
    model = {
        "name": servers.MLSERVER_MODEL,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model_dir)},
    }
    (folder / "settings.json").write_text(json.dumps(server, indent=2))
    (folder / servers.MLSERVER_MODEL).mkdir(exist_ok=True)
    (folder / servers.MLSERVER_MODEL / "model-settings.json").write_text(
        json.dumps(model, indent=2)
    )
    argv = [str(venv / "bin" / "mlserver"), "start", str(folder)]
    return ServerSpec(name, argv, _env(venv), port, "mlserver")


def bentoml(name: str, venv: Path, model_dir: Path, workers: int, home: Path) -> ServerSpec:
    """Return the spec of `bentoml serve` on bench/peers/bento_service.py and the model folder.

    ``home`` is BentoML's own folder (BENTOML_HOME), kept out of the user's home.
    """
    port = free_port()
    argv = [str(venv / "bin" / "bentoml"), "serve", "bento_service:Penguins"]
    argv += ["--working-dir", str(REQUIREMENTS_DIR), "--host", HOST, "--port", str(port)]
    env = _env(
        venv,
        PENGUINS_MODEL_DIR=str(model_dir),
        PENGUINS_WORKERS=str(workers),
        BENTOML_HOME=str(home),
        BENTOML_DO_NOT_TRACK="True",
    )
    return ServerSpec(name, argv, env, port, "bentoml")


def spec(name: str, model_dir: Path, workers: int, tmp: Path, root: Path = VENVS_DIR) -> ServerSpec:
    """Return the spec of a peer by its name, from its ready virtualenv."""
    if name not in PEERS:
        raise ValueError(f"{name} is no peer: one of {', '.join(PEERS)}")
    venv = venv_dir(name, root)
    if name == "mlserver":
        return mlserver(name, venv, model_dir, workers, tmp / "mlserver")
    return bentoml(name, venv, model_dir, workers, tmp / "bentoml-home")
