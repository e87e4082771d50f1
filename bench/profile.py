"""Where a server's time goes: py-spy samples of every worker, folded into a few buckets.

py-spy (a dev requirement) records the server's whole process tree while wrk sends
one-row requests. Each sample of a worker handling a request goes to one bucket, so
the buckets add up to 100 %: first to the first LIBRARIES bucket that any of its
frames belongs to (everything scikit-learn calls is the model's time), otherwise to
the LAYERS bucket of its innermost frame that has one (a uuid4 called from our code
is our code's time, not Flask's, although Flask is further up every stack).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench.servers import VENV_BIN

# (bucket, patterns matched against py-spy's "function (file:line)" frames), first wins.
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prediction log (SQLite)", ("predlog.py", "sqlite3/")),
    ("metrics (prometheus_client)", ("prometheus_client/", "penguins/metrics.py")),
    ("model: predict_proba", ("fastpath.py", "sklearn/", "joblib/")),
    ("model input: pandas DataFrame", ("pandas/", "narwhals/")),
    ("model refresh (MLflow registry)", ("mlflow/", "sqlalchemy/", "ModelManager.refresh")),
    ("pydantic: request validation, response objects", ("pydantic", "schemas.py")),
    ("JSON encode/decode", ("json/", "orjson")),
)
# Layers every request passes through, innermost first wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("our API code (penguins/, stdlib it calls)", ("penguins/", "ml_serving.py")),
    ("Flask/Werkzeug request and response", ("flask/", "werkzeug/")),
    ("gunicorn: sockets, HTTP parsing, worker loop", ("gunicorn/",)),
)
OTHER = "other"
# Frames of the project's own code, for the list of hottest functions.
OWN_CODE = re.compile(r"\((ml_serving\.py|penguins/[^:]+|[^)]*/penguins/[^:]+):\d+\)")


_LINE = re.compile(r":\d+\)$")


class ProfileError(RuntimeError):
    """py-spy is missing or could not record."""


def py_spy() -> str | None:
    """Return the path of py-spy, in the venv or on PATH, or None."""
    local = VENV_BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_recording(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen:
    """Start py-spy on a process and its children; it writes folded stacks to ``out``."""
    binary = py_spy()
    if binary is None:
        raise ProfileError("py-spy is not installed: pip install -r requirements-dev.txt")
    command = [binary, "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
    command += ["--format", "raw", "--rate", str(rate), "--duration", str(round(seconds))]
    command += ["--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def parse_folded(text: str) -> list[tuple[list[str], int]]:
    """Read py-spy's raw format: one stack per line, frames joined by ';', then a count."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            stacks.append((frames, int(count)))
    return stacks


def bucket_of(frames: list[str]) -> str:
    """Return the bucket of a stack (frames outermost first), as the module says."""
    for name, patterns in LIBRARIES:
        if any(p in frame for frame in frames for p in patterns):
            return name
    for frame in reversed(frames):
        for name, patterns in LAYERS:
            if any(p in frame for p in patterns):
                return name
    return OTHER


# A worker handling a connection (HTTP parsing included), not waiting, booting or a timer.
_HANDLING = re.compile(r"Worker\.handle\b|handle_request|wsgi_app")


def _busy(frames: list[str]) -> bool:
    """Return whether a stack is a worker handling a request."""
    return any(_HANDLING.search(f) for f in frames)


def breakdown(stacks: list[tuple[list[str], int]]) -> dict[str, object]:
    """Return the share of request-handling samples per bucket and the hottest own functions."""
    busy = [(frames, n) for frames, n in stacks if _busy(frames)]
    total = sum(n for _, n in busy)
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in busy:
        buckets[bucket_of(frames)] += n
        # By function, whatever the line: "predict (penguins/api.py:237)" -> "... api.py)".
        for function in {_LINE.sub(")", f) for f in frames if OWN_CODE.search(f)}:
            own[function] += n
    share = {k: 100 * v / total for k, v in buckets.most_common()} if total else {}
    # Entry points under every sample (main, the gunicorn app) say nothing: leave them out.
    informative = [(f, n) for f, n in own.most_common() if n < total]
    hottest = [(f, 100 * n / total) for f, n in informative[:12]] if total else []
    samples = sum(n for _, n in stacks)
    return {"samples": samples, "busy_samples": total, "buckets": share, "own_code": hottest}
