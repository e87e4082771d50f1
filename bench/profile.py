"""Where our API's time goes: py-spy samples of every worker, folded into a few buckets.

py-spy (a dev requirement) records the server's whole process tree while it is loaded.
Each sample of a worker handling a request goes to one bucket, so the buckets add up
to 100 %: first to the first LIBRARIES bucket that any of its frames belongs to (all
that runs under ``penguins/predlog.py`` is the log's time, everything scikit-learn
calls is the model's), otherwise to the LAYERS bucket of its innermost frame that has
one (a uuid4 called from the prediction path is that path's time, not Flask's,
although Flask is further up every stack). Buckets are named by the files they cover;
they also know the files of the flat layout before penguins/serving/ (``fastpath.py``,
``served_model.py``, ``schemas.py``, ``metrics.py``), so that a ``--baseline`` checkout
from before it is bucketed alike. Its ``api.py`` held the routes, the parsing and the
answer text at once: in such a profile they are all "routes".
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

from bench.servers import VENV_BIN

# (bucket, substrings of py-spy's "function (file:line)" frames), first wins.
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "prediction log: predlog.py, SQLite",
        ("penguins/predlog.py", "penguins/predlog/", "sqlite3/", "psycopg/"),
    ),
    (
        "metrics: serving/metrics.py, prometheus_client",
        ("penguins/serving/metrics.py", "penguins/metrics.py", "prometheus_client/"),
    ),
    (
        "model refresh: serving/manager.py, registry.py, MLflow",
        ("penguins/serving/manager.py", "penguins/registry.py", "mlflow/", "sqlalchemy/"),
    ),
    (
        "model: serving/model.py, serving/fastpath.py, scikit-learn",
        (
            "penguins/serving/model.py",
            "penguins/serving/fastpath.py",
            "penguins/served_model.py",
            "penguins/fastpath.py",
            "sklearn/",
            "joblib/",
        ),
    ),
    ("model input: pandas DataFrame", ("pandas/", "narwhals/")),
    ("prediction ids: serving/ids.py, uuid", ("penguins/serving/ids.py", "/uuid.py")),
    ("answer text: serving/answers.py", ("penguins/serving/answers.py",)),
    (
        "checks: serving/schemas.py (fast_rows), pydantic",
        ("penguins/serving/schemas.py", "penguins/schemas.py", "pydantic"),
    ),
    ("parsing, JSON: serving/parsing.py, json", ("penguins/serving/parsing.py", "json/", "orjson")),
)
# Layers every request passes through, innermost first wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prediction path: serving/dataplane.py", ("penguins/serving/dataplane.py",)),
    ("routes and the rest of penguins/ (stdlib it calls)", ("penguins/", "ml_serving.py")),
    ("Flask/Werkzeug request and response", ("flask/", "werkzeug/")),
    ("gunicorn: sockets, HTTP parsing, worker loop", ("gunicorn/",)),
)
OTHER = "other"
# Frames of the project's own code, for the list of hottest functions.
OWN_CODE = re.compile(r"\((ml_serving\.py|penguins/[^:]+|[^)]*/penguins/[^:]+):\d+\)")
_LINE = re.compile(r":\d+\)$")
# A worker handling a connection (HTTP parsing included), not waiting, booting or a timer.
_HANDLING = re.compile(r"Worker\.handle\b|handle_request|wsgi_app")


def py_spy() -> str | None:
    """Return the path of py-spy, in the venv or on PATH, or None."""
    local = VENV_BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record_command(pid: int, seconds: float, out: Path, rate: int = 200) -> list[str]:
    """Return the py-spy command that samples a process and its children into ``out``."""
    command = [py_spy() or "py-spy", "record", "--pid", str(pid), "--subprocesses"]
    command += ["--nonblocking", "--format", "raw", "--rate", str(rate)]
    return [*command, "--duration", str(round(seconds)), "--output", str(out)]


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


def breakdown(stacks: list[tuple[list[str], int]]) -> dict[str, object]:
    """Return the share of request-handling samples per bucket and the hottest own functions."""
    busy = [(frames, n) for frames, n in stacks if any(_HANDLING.search(f) for f in frames)]
    total = sum(n for _, n in busy)
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in busy:
        buckets[bucket_of(frames)] += n
        # By function, whatever the line: "predict (penguins/x.py:237)" -> "... x.py)".
        for function in {_LINE.sub(")", f) for f in frames if OWN_CODE.search(f)}:
            own[function] += n
    share = {k: 100 * v / total for k, v in buckets.most_common()} if total else {}
    # Entry points under every sample (main, the gunicorn app) say nothing: leave them out.
    # Ties go by name, so that the same samples always give the same list.
    ranked = sorted(own.items(), key=lambda item: (-item[1], item[0]))
    informative = [(f, n) for f, n in ranked if n < total]
    hottest = [(f, 100 * n / total) for f, n in informative[:12]] if total else []
    samples = sum(n for _, n in stacks)
    return {"samples": samples, "busy_samples": total, "buckets": share, "own_code": hottest}
