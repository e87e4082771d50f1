"""Turn the figures of a run into the printed summary, docs/BENCHMARKS.md and the PNG chart.

Everything here is pure: it reads the JSON-ready figures that bench/suite.py gathered and
measures nothing. The report is one table: the rows of :func:`rows`, each a figure read
for every server, some with the goal of :func:`goals` it is judged on. A missing figure
reads "n/a" and its goal "not measured".
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

NA = "n/a"
ORDER = ("ours", "baseline", "mlflow", "mlflow-1w", "mlserver", "bentoml")
COLORS = {"ours": "#2a7ab0", "baseline": "#8fb9d6", "mlflow": "#d9822b", "mlflow-1w": "#f0b77a"}
COLORS |= {"mlserver": "#3d9a5b", "bentoml": "#8a5fb0"}
# The peers, each from a virtualenv of its own (bench/peers.py), by their names in tables.
PEERS = {"mlserver": "MLServer", "bentoml": "BentoML"}
# Ours against each peer that ran: the 1,000-row batch's rows/s, at least this many times.
TARGET_PEER_BATCH_RATIO = 2
TARGET_BATCH_ROWS_S = 250_000
# Batches with this many rows in the prediction log keep this share of their empty-log speed.
TARGET_LOG_ROWS, TARGET_LOG_RATIO = 1_000_000, 0.8


def median(values: list[float] | None) -> float | None:
    """Return the median of a list, or None when it is empty or missing."""
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number, thousands separated from 1000 up, or n/a."""
    if value is None:
        return NA
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    """Format a ratio as 12.3x, or as 0.97x below 10, where the second digit matters."""
    return NA if value is None else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    """Return a / b, or None when either is missing or b is zero."""
    return None if a is None or not b else a / b


def per_s(count: float, seconds: float | None) -> float | None:
    """Return a count per second, or None without a time."""
    return count / seconds if seconds else None


def servers(figures: dict) -> list[str]:
    """Return the servers measured in this run, in table order."""
    return [name for name in ORDER if name in figures.get("servers", {})]


def label(figures: dict, name: str) -> str:
    """Return a server's name for tables and the chart, with its worker count."""
    workers = figures.get("settings", {}).get("workers", NA)
    if name == "mlflow-1w":
        return "mlflow serve (1 worker)"
    commit = figures.get("baseline", {}).get("commit", "")
    if name in PEERS:
        version = figures.get("peers", {}).get(name, {}).get("versions", {}).get(name)
        return f"{' '.join(filter(None, (PEERS[name], version)))} ({workers} workers)"
    kind = {"baseline": f"baseline {commit}", "mlflow": "mlflow serve"}.get(name, name)
    return f"{kind} ({workers} workers)"


def connections(figures: dict) -> list[int]:
    """Return the concurrencies of the run."""
    return figures.get("settings", {}).get("connections", [1, 8, 32])


def load_median(figures: dict, name: str, conns: int | str, key: str) -> float | None:
    """Return the median of one wrk figure over a server's runs at a concurrency."""
    runs = figures.get("servers", {}).get(name, {}).get("load", {}).get(str(conns), [])
    return median([run[key] for run in runs if key in run])


def inprocess_ms(figures: dict, kind: str, rows: int | str) -> float | None:
    """Return the in-process ms per predict_proba call of a kind (pipeline, fast) and size."""
    return figures.get("inprocess_ms", {}).get(kind, {}).get(str(rows))


class Row(NamedTuple):
    """One row of the report: a figure as ``read(figures, server)`` gives it for each server."""

    name: str
    read: Callable[[dict, str], float | None]
    digits: int = 2


def measured(key: str, reduce: Callable = lambda v: v) -> Callable[[dict, str], float | None]:
    """Return a reader of one thing measured on each server, reduced (a median, say)."""

    def read(figures: dict, name: str) -> float | None:
        """Return the reduced figure of one server, None when it was not measured."""
        value = figures.get("servers", {}).get(name, {}).get(key)
        return None if value is None else reduce(value)

    return read


def model_ms(n: int) -> Callable[[dict, str], float | None]:
    """Return a reader of the model's in-process ms for n rows, as each server runs it."""
    kinds = {"ours": "fast", "mlflow": "pipeline", "mlflow-1w": "pipeline"}
    kinds |= dict.fromkeys(PEERS, "pipeline")
    return lambda figures, name: inprocess_ms(figures, kinds.get(name, ""), n)


def rows(figures: dict) -> list[Row]:
    """Return the rows of the report's table, in order."""
    n, conns = figures.get("batch_rows", 10_000), connections(figures)
    sizes = figures.get("sizes", [1, 1000, 10_000])
    found = [
        Row(f"{what}, {c} conn.", lambda f, s, c=c, k=key: load_median(f, s, c, k), digits)
        for what, key, digits in (
            ("one-row req/s", "rps", 0),
            ("one-row p50, ms", "p50_ms", 2),
            ("one-row p99, ms", "p99_ms", 2),
            ("server CPU per request, ms", "cpu_ms_per_request", 2),
        )
        for c in conns
    ]
    k = figures.get("small_batch_rows", 1000)
    found += [
        Row(f"{k:,}-row batch, median s", measured("small_batch_s", median), 3),
        Row(
            f"{k:,}-row batch, rows/s", measured("small_batch_s", lambda v: per_s(k, median(v))), 0
        ),
        Row(f"{n:,}-row batch, median s", measured("batch_s", median), 3),
        Row(f"{n:,}-row batch, rows/s", measured("batch_s", lambda v: per_s(n, median(v))), 0),
        *(
            Row(f"the model in process, {k:,} row{'s' * (k > 1)}, ms", model_ms(k), 3)
            for k in sizes
        ),
        Row("cold start, spawn to first 200, s", measured("cold_start_s")),
        Row("spawn to every worker loaded and idle, s", measured("settled_s")),
    ]
    for at, when in (("memory", "warm"), ("memory_after_batch", f"after the {n:,}-row batches")):
        for key in ("rss_mb", "pss_mb", "uss_mb")[at != "memory" :]:
            name = f"process tree {key[:3].upper()}, {when}, MB"
            found.append(Row(name, measured(at, lambda v, key=key: v.get(key)), 0))
    return found + [
        Row("processes in the tree", measured("memory", lambda v: v.get("processes")), 0),
        Row("`/metrics` scrape, median, ms", measured("metrics_scrape_ms", median)),
        Row(
            "`python modelling.py` wall time, s",
            lambda f, s: f.get("training_s") if s == "ours" else None,
            1,
        ),
    ]


class Goal(NamedTuple):
    """A target one row is judged on: its text and whether this run met it (None: unknown)."""

    text: str
    met: bool | None


def goals(figures: dict) -> dict[str, Goal]:
    """Return the targets of our API by the name of the row each is judged on."""
    n, workers = figures.get("batch_rows", 10_000), figures.get("settings", {}).get("workers")
    value = {row.name: row.read(figures, "ours") for row in rows(figures)}
    # Against each mlflow server and peer that ran: ten times the one-row requests at 8 conn.
    others = ("mlflow", "mlflow-1w", *PEERS)
    peers = [load_median(figures, peer, 8, "rps") for peer in others]
    found = [ratio(value["one-row req/s, 8 conn."], rps) for rps in peers if rps]
    met = None if not found or None in found else min(found) >= 10
    against = _against(figures, ["mlflow serve"])
    targets = {"one-row req/s, 8 conn.": Goal(f">= 10x each {against}", met)}
    if asked_peers(figures):
        k = figures.get("small_batch_rows", 1000)
        targets[f"{k:,}-row batch, rows/s"] = peer_batch_goal(
            figures, value[f"{k:,}-row batch, rows/s"]
        )
    floor = inprocess_ms(figures, "pipeline", 1)
    p50, batch = None if floor is None else floor + 0.5, TARGET_BATCH_ROWS_S
    # (row, goal, limit, whether the figure must reach the limit rather than stay under it)
    for row, text, limit, at_least in (
        ("one-row p50, ms, 1 conn.", f"in-process pipeline + 0.5 ms = {fmt(p50)} ms", p50, False),
        (f"{n:,}-row batch, rows/s", f"{batch:,} rows/s", batch, True),
        ("process tree PSS, warm, MB", f"400 MB ({workers} workers)", 400, False),
        ("`/metrics` scrape, median, ms", "5 ms", 5, False),
        ("`python modelling.py` wall time, s", "20 s", 20, False),
    ):
        got = value.get(row)
        met = None if got is None or limit is None else got >= limit if at_least else got <= limit
        targets[row] = Goal(f"{'>=' if at_least else '<='} {text}", met)
    return targets


VERDICTS = {True: "met", False: "**missed**", None: "not measured"}


def asked_peers(figures: dict) -> list[str]:
    """Return the peers of the run, measured or skipped, in table order."""
    return [n for n in PEERS if n in figures.get("servers", {}) or n in skipped(figures)]


def skipped(figures: dict) -> dict[str, str]:
    """Return why each server of the run that was not measured was skipped, by name."""
    return figures.get("skipped", {})


def _against(figures: dict, first: list[str]) -> str:
    """Return the servers a target compares ours to, in words: the peers, skipped ones said so."""
    names = [*first, *(PEERS[n] for n in asked_peers(figures) if n not in skipped(figures))]
    gone = [PEERS[n] for n in asked_peers(figures) if n in skipped(figures)]
    text = _and(names) if names else "peer"
    return f"{text} ({_and(gone)} skipped)" if gone else text


def _and(names: list[str]) -> str:
    """Return names as a list in words: a, b and c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def peer_batch_goal(figures: dict, ours: float | None) -> Goal:
    """Return the target of the small batch: ours at least twice each peer's rows/s."""
    k = figures.get("small_batch_rows", 1000)
    rates = [
        per_s(k, median(figures["servers"][n].get("small_batch_s")))
        for n in asked_peers(figures)
        if n in figures.get("servers", {})
    ]
    found = [ratio(ours, rate) for rate in rates]
    met = None if not found or None in found else min(found) >= TARGET_PEER_BATCH_RATIO
    return Goal(f">= {TARGET_PEER_BATCH_RATIO}x each {_against(figures, [])}", met)


def comparison(figures: dict, name: Callable = label) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the table: each figure per server, ours / each other, goal."""
    names, targets = servers(figures), goals(figures)
    others = [n for n in names if n != "ours"] if "ours" in names else []
    header = ["", *(name(figures, n) for n in names)]
    header += [f"ours / {name(figures, n)}" for n in others] + ["target", "result"]
    lines = []
    for row in rows(figures):
        values = {n: row.read(figures, n) for n in names}
        cells = [row.name, *(fmt(values[n], row.digits) for n in names)]
        cells += [times(ratio(values["ours"], values[n])) for n in others]
        goal = targets.get(row.name)
        lines.append(cells + ([goal.text, VERDICTS[goal.met]] if goal else ["", ""]))
    return header, lines


def table(header: list[str], lines: list[list[str]]) -> list[str]:
    """Return the lines of a markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(line) + " |" for line in lines]


def _profile_lines(figures: dict) -> list[str]:
    """Return the lines of each py-spy breakdown of our API."""
    lines = []
    for one in (figures.get("profile") or {}).values():
        if not one.get("busy_samples"):
            continue
        buckets = [[name, f"{share:.1f} %"] for name, share in one["buckets"].items()]
        own = [[f"`{frame}`", f"{share:.1f} %"] for frame, share in one["own_code"]]
        seconds, rate, busy = fmt(one.get("seconds"), 0), one.get("rate", NA), one["busy_samples"]
        lines += ["", f"### {one.get('what', NA)}", ""]
        lines.append(
            f"py-spy sampled every worker for {seconds} s at {rate}: {busy:,} samples inside "
            "request handling."
        )
        lines += ["", *table(["bucket", "share of request samples"], buckets), ""]
        lines += ["Our own functions, share of the request samples spent inside them (inclusive):"]
        lines += ["", *table(["function (file)", "share"], own)]
    return lines


def _before_after_lines(figures: dict) -> list[str]:
    """Return the 10,000-row batch's buckets for the baseline and ours, side by side.

    A share times the server's median batch time estimates the milliseconds a request
    spends in that bucket.
    """
    after = (figures.get("profile") or {}).get("batch") or {}
    before = (figures.get("profile_baseline") or {}).get("batch") or {}
    if not (after.get("busy_samples") and before.get("busy_samples")):
        return []
    servers_ = figures.get("servers", {})
    seconds = {
        "baseline": median(servers_.get("baseline", {}).get("batch_s")),
        "ours": median(servers_.get("ours", {}).get("batch_s")),
    }
    names = list(dict.fromkeys([*before["buckets"], *after["buckets"]]))
    lines = []
    for name in names:
        shares = before["buckets"].get(name, 0.0), after["buckets"].get(name, 0.0)
        ms = [
            fmt(None if s is None else share * s * 10, 1)
            for share, s in zip(shares, (seconds["baseline"], seconds["ours"]), strict=True)
        ]
        lines.append([name, f"{shares[0]:.1f} %", ms[0], f"{shares[1]:.1f} %", ms[1]])
    total = [fmt(None if s is None else s * 1000, 1) for s in seconds.values()]
    lines.append(["**the median request, ms**", "", total[0], "", total[1]])
    commit = figures.get("baseline", {}).get("commit", "baseline")
    header = ["bucket", f"before ({commit})", "ms", "after (this checkout)", "ms"]
    intro = (
        f"The {figures.get('batch_rows', 10_000):,}-row `/predict/batch`, profiled the same way "
        "on both checkouts in this run; ms = the bucket's share of the samples times the "
        "server's median batch time."
    )
    return ["", "### Before and after", "", intro, "", *table(header, lines)]


def _machine_lines(figures: dict) -> list[str]:
    """Return the lines describing the machine, its load, versions, checkouts and settings."""
    machine, versions = figures.get("machine", {}), figures.get("versions", {})
    model, s, base = figures.get("model", {}), figures.get("settings", {}), figures.get("baseline")
    loads = [
        ", ".join(f"{v:.2f}" for v in figures.get(f"load_{k}") or []) or NA
        for k in ("before", "after")
    ]
    busy = [f"{fmt(figures.get(f'cpu_busy_{when}'), 0)} %" for when in ("before", "after")]
    packages = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python") or NA
    baseline = f"; baseline: {base['commit']} at {base['path']}" if base else ""
    return [
        f"- {figures.get('date', NA)}; {machine.get('cpu', NA)}, {machine.get('cores', NA)} "
        f"cores, {machine.get('memory_gb', NA)} GB, {machine.get('os', NA)}",
        f"- load average 1/5/15 min before / after: {' / '.join(loads)}; CPU busy with other "
        f"work 1 s before / after the run: {' / '.join(busy)}",
        f"- Python {versions.get('python', NA)}; {packages}",
        f"- ours: {figures.get('commit', NA)} and its working tree{baseline}",
        f"- model `{model.get('uri', NA)}` = version {model.get('version', NA)} "
        f"({model.get('algorithm', NA)})",
        f"- {s.get('workers', NA)} workers per server; wrk {s.get('duration_s', NA)} s per run, "
        f"{s.get('wrk_threads', NA)} wrk thread(s), {s.get('repeats', NA)} runs per server and "
        "concurrency, interleaved",
        *_peer_version_lines(figures),
    ]


def _peer_version_lines(figures: dict) -> list[str]:
    """Return a line per measured peer: the versions in its own virtualenv."""
    lines = []
    for name in asked_peers(figures):
        versions = figures.get("peers", {}).get(name, {}).get("versions")
        if versions and name not in skipped(figures):
            shown = ", ".join(f"{k} {v}" for k, v in versions.items())
            lines.append(f"- {PEERS[name]}, in a virtualenv of its own: {shown}")
    return lines


def _skipped_lines(figures: dict) -> list[str]:
    """Return, for each server of the run that was skipped, its name and why."""
    lines = []
    for name, reason in skipped(figures).items():
        first, *more = reason.splitlines() or [NA]
        lines += [""] if lines else []
        lines.append(f"- {PEERS.get(name, name)}: {first}")
        lines += ["", "  ```", *(f"  {line}" for line in more), "  ```"] if more else []
    return lines


NOTES = [
    "- One row: ours `POST /predict` with one sample, mlflow `POST /invocations` with "
    '`{"dataframe_records": [sample]}`; batches: ours `POST /predict/batch` with '
    '`{"samples": [...]}`, mlflow the same records. Same rows, same model version. A ratio '
    "above 1 is better for req/s and rows/s, below 1 for the rest.",
    "- The model in process: `penguins/serving/fastpath.py` on a numpy array (ours), the "
    "champion's scikit-learn pipeline from `mlflow.sklearn.load_model` on a pandas DataFrame "
    "(mlflow); inputs built before timing.",
    "- The servers run side by side on free ports of 127.0.0.1, started as users start them "
    "(`python ml_serving.py --workers N`; `mlflow models serve --env-manager local --workers "
    "N`); wrk (one thread unless `--wrk-threads`) shares the cores with them. With "
    "`--baseline PATH` our API also runs from another checkout (its `ml_serving.py`, the same "
    "virtualenv), to compare two commits in one run.",
    "- Every stage visits the servers in turn, the first alternating between rounds: wrk runs "
    "(a round runs every concurrency on every server), batches and scrapes. The table gives "
    "the median over the rounds, after an uncounted warm-up. Any non-2xx answer or socket "
    "error fails the run.",
    "- The machine is shared: read the figures with the load it had (above). Only ratios "
    "from one run mean much here; that is why every stage interleaves the servers.",
    "- `mlflow models serve --workers N` (N > 1) runs uvicorn's multiprocess supervisor, whose "
    "listening socket is created without `IPPROTO_TCP`, so asyncio never sets `TCP_NODELAY` "
    "(uvicorn issue #3149, open, uvicorn 0.54): on a keep-alive connection the body waits for "
    "the client's delayed ACK, ~40 ms per request. Users get that with the same worker count, "
    "so it is measured; the one-worker column shows mlflow without it.",
    "- Peers: MLServer (`mlserver start`, the `mlserver_mlflow.MLflowRuntime` on the "
    "champion's MLflow folder, `parallel_workers` N; one row and batches `POST "
    "/v2/models/penguins-classifier/infer`, a V2 request with the pandas content type, one "
    "input per feature) and BentoML (`bentoml serve` of `bench/peers/bento_service.py`, "
    "`mlflow.sklearn.load_model` of the same folder, N workers; `POST /predict` with "
    '`{"records": [...]}`). Each runs from a virtualenv of its own under `bench/.peers/`, '
    "installed from its pins in `bench/peers/` (MLServer's with uvloop 0.21.0: its parallel "
    "workers crash with uvloop 0.23, SeldonIO/MLServer#2286). Both answer the `predict` labels "
    "and record nothing. They take one-row load at 1 and 8 connections only; a peer that "
    "cannot be installed or started is skipped, with the reason in this report.",
    "- Our `/predict` returns probabilities and records each prediction in the SQLite "
    "prediction log before answering; mlflow returns the pyfunc `predict` labels and records "
    "nothing. Batches are POSTed with `requests` (body encoded beforehand, answer parsed).",
    "- Server CPU: user + system time of the whole process tree during a wrk run, per request. "
    "Memory: RSS, PSS and USS from psutil `memory_full_info` summed over the tree, warm (after "
    "the one-row runs) and after the big batches; PSS splits shared pages between the "
    "processes sharing them, RSS counts them in each. `/metrics`: `GET` to the last byte. "
    "Latencies: wrk's own histogram, read by its lua `done()` hook.",
]
PROFILE_NOTE = (
    "Each sample counts once: for the file or library it is in (everything under "
    "`penguins/predlog.py` is the log's time, everything scikit-learn calls the model's), else "
    "for the innermost layer of its stack (the prediction path, the routes, Flask, gunicorn). "
    "Sampling on a shared machine is noisy: a few points either way."
)


def log_sizes(figures: dict) -> list[dict]:
    """Return each log of the log-size stage with its server's name, smallest log first."""
    logs = figures.get("log_sizes", {}).get("logs", {})
    return sorted(({"name": k, **v} for k, v in logs.items()), key=lambda f: f.get("rows", 0))


def log_batches(figures: dict) -> list[int]:
    """Return the rows per batch of the log-size stage."""
    return figures.get("log_sizes", {}).get("batches", [])


def log_rows_per_s(found: dict | None, n: int) -> float | None:
    """Return rows/s of n-row batches on one log: all rows over all the time, prunes and all."""
    seconds = (found or {}).get("batch_s", {}).get(str(n))
    return per_s(n * len(seconds), sum(seconds)) if seconds else None


def log_size_ratios(figures: dict) -> dict[int, float | None]:
    """Return, per batch size, the largest log's rows/s over the empty log's ({}: no pair)."""
    found = log_sizes(figures)
    empty = next((f for f in found if f.get("rows") == 0), None)
    if empty is None or found[-1] is empty:
        return {}
    return {
        n: ratio(log_rows_per_s(found[-1], n), log_rows_per_s(empty, n))
        for n in log_batches(figures)
    }


def log_size_goal(figures: dict) -> Goal:
    """Return the target of the log-size stage, judged only when the largest log is big enough."""
    found, ratios = log_sizes(figures), log_size_ratios(figures)
    largest = found[-1].get("rows", 0) if found else 0
    judged = ratios and None not in ratios.values() and largest >= TARGET_LOG_ROWS
    text = (
        f">= {TARGET_LOG_RATIO:.2f}x the empty log's rows/s with {TARGET_LOG_ROWS:,} rows "
        "in the log, every batch size"
    )
    return Goal(text, min(ratios.values()) >= TARGET_LOG_RATIO if judged else None)


def _count(value: int | None) -> str:
    """Format a row count with thousands separators, or n/a."""
    return NA if value is None else f"{value:,}"


def log_size_table(figures: dict) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the batch-speed-by-log-size table, one row per log."""
    batches, found = log_batches(figures), log_sizes(figures)
    empty = next((f for f in found if f.get("rows") == 0), None)
    header = ["prefilled log, rows", "server", "log rows before / after", "prefill, s"]
    header += [f"{n:,}-row batch, rows/s" for n in batches]
    header += [f"{n:,}-row, / empty log" for n in batches]
    lines = []
    for one in found:
        rates = {n: log_rows_per_s(one, n) for n in batches}
        counts = f"{_count(one.get('rows_before'))} / {_count(one.get('rows_after'))}"
        cells = [_count(one.get("rows")), one["name"], counts, fmt(one.get("prefill_s"), 1)]
        cells += [fmt(rate, 0) for rate in rates.values()]
        cells += [times(ratio(r, log_rows_per_s(empty, n))) for n, r in rates.items()]
        lines.append(cells)
    return header, lines


def log_size_verdict(figures: dict) -> str:
    """Return one line: the largest log against the empty one, and the target's verdict."""
    goal, found = log_size_goal(figures), log_sizes(figures)
    ratios = log_size_ratios(figures).items()
    shown = ", ".join(f"{times(r)} ({n:,}-row batches)" for n, r in ratios)
    largest = _count(found[-1].get("rows")) if found else NA
    return (
        f"{largest}-row log / empty log: {shown or NA}; target {goal.text}: {VERDICTS[goal.met]}."
    )


LOG_SIZE_NOTE = (
    "Our API on prediction logs prefilled to each size, through the log's own "
    "`record_predictions` in 10,000-row requests (time-ordered ids, the data set's rows, "
    "`created_at` over the day before); the `@0` server starts on an empty log. These servers "
    "run for this stage alone, after the others, and take 1,000- and 10,000-row "
    "`/predict/batch` POSTs in turn, the order reversed each round, after one uncounted round. "
    "Rows/s is all the rows over all the time of the rounds, not a median. Retention (the "
    "newest 1,000,000 rows are kept) and WAL checkpoints run in each worker's upkeep thread "
    "every half second, beside the requests, so a full log prunes during the rounds: that "
    "costs the requests what it takes from them in CPU and in the log's write lock, and "
    "nothing where a core is idle. Log rows are counted with sqlite3 just "
    "before the first and after the last batch; a larger log prefills as a copy of the one "
    "before it, extended."
)


def _log_size_lines(figures: dict) -> list[str]:
    """Return the lines of the batch-speed-by-log-size section, none when it was not run."""
    if not log_sizes(figures):
        return []
    return [LOG_SIZE_NOTE, "", *table(*log_size_table(figures)), "", log_size_verdict(figures)]


SLOW_CLIENTS_NOTE = (
    "Each server in turn, after the batches: {n} connections that send their headers one "
    "line a second and never end them, and {n} requests whose `Content-Length` promises "
    "100,000 bytes of body after sending one, held open while one client sends {probes} "
    "one-row requests one after another, each with a {timeout:g} s timeout "
    "(`bench/slowclients.py`)."
)


def slow_client_table(figures: dict) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the slow-clients table, one row per server measured."""
    header = ["server", "slow connections held", "one-row requests answered", "their p50, ms"]
    lines = []
    for name in servers(figures):
        found = figures["servers"][name].get("slow_clients")
        if found:
            answered = f"{found['answered']} of {found['sent']}"
            cells = [label(figures, name), str(found["slow_clients"]), answered]
            lines.append([*cells, fmt(found.get("p50_ms"))])
    return header, lines


def _slow_client_lines(figures: dict) -> list[str]:
    """Return the lines of the slow-clients section, none when it was not run."""
    header, lines = slow_client_table(figures)
    if not lines:
        return []
    how = figures.get("slow_clients", {})
    note = SLOW_CLIENTS_NOTE.format(
        n=how.get("per_kind", NA), probes=how.get("probes", NA), timeout=how.get("timeout_s", 0)
    )
    return [note, "", *table(header, lines)]


def _aligned(header: list[str], lines: list[list[str]]) -> list[str]:
    """Return a table as console lines: the first column to the left, the rest to the right."""
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    cut = range(1, len(header))
    return [
        "  ".join([line[0].ljust(widths[0]), *(line[i].rjust(widths[i]) for i in cut)])
        for line in [header, *lines]
    ]


# ---- the team deployment (bench/team.py) ----------------------------------------------

TEAM_HEADING = "## Team deployment"
# The report's sections after the team's, in order: a team section is put before them.
PROFILE_HEADING = "## Where our API spends its time (py-spy)"
MACHINE_HEADING, NOTES_HEADING = "## Machine and settings", "## How it was measured"
SECTIONS_AFTER_TEAM = (PROFILE_HEADING, MACHINE_HEADING, NOTES_HEADING)
# 10,000-row batches into a PostgreSQL log, end to end, at least this many rows/s.
TARGET_TEAM_BATCH_ROWS_S = 150_000
# Two replicas with half the workers each, behind nginx, keep this share of one replica's
# one-row req/s behind the same nginx: sharing the log and the store costs nothing visible.
TARGET_REPLICA_RATIO = 0.9
LOGS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
SETUPS = ("direct", "one", "two", "two-full")
JUDGED_SETUP, REFERENCE_SETUP = "two", "one"


def team(figures: dict) -> dict:
    """Return the team stage's figures ({} when it was not run)."""
    return figures.get("team") or {}


def team_batches(figures: dict) -> list[int]:
    """Return the rows per batch of the team stage's log comparison."""
    return team(figures).get("batches", [])


def team_batch_rate(figures: dict, log: str, n: int) -> float | None:
    """Return the median rows/s of n-row batches on one log of the team stage."""
    seconds = team(figures).get("logs", {}).get(log, {}).get("batch_s", {}).get(str(n))
    return per_s(n, median(seconds))


def team_batch_goal(figures: dict) -> Goal:
    """Return the target of the largest batch into the PostgreSQL log."""
    n = max(team_batches(figures), default=10_000)
    got = team_batch_rate(figures, "postgresql", n)
    text = f">= {TARGET_TEAM_BATCH_ROWS_S:,} rows/s, {n:,}-row batches into PostgreSQL"
    return Goal(text, None if got is None else got >= TARGET_TEAM_BATCH_ROWS_S)


def team_log_table(figures: dict) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the log comparison: rows/s, / SQLite, CPU per batch."""
    batches, logs = team_batches(figures), team(figures).get("logs", {})
    n = max(batches, default=10_000)
    header = ["prediction log", *(f"{k:,}-row batch, rows/s" for k in batches)]
    header += [f"{k:,}-row, / SQLite" for k in batches]
    header += [f"{n:,}-row batch, CPU ms: API", "PostgreSQL", "log rows before / after"]
    lines = []
    for log in (name for name in LOGS if name in logs):
        rates = [team_batch_rate(figures, log, k) for k in batches]
        cells = [LOGS[log], *(fmt(rate, 0) for rate in rates)]
        cells += [
            times(ratio(rate, team_batch_rate(figures, "sqlite", k)))
            for k, rate in zip(batches, rates, strict=True)
        ]
        found = logs[log]
        cpu = found.get("cpu_ms_per_batch", {})
        cells += [fmt(cpu.get("api"), 0), fmt(cpu.get("postgres"), 0)]
        counted = "rows_before" in found
        cells.append(
            f"{_count(found.get('rows_before'))} / {_count(found.get('rows_after'))}"
            if counted
            else NA
        )
        lines.append(cells)
    return header, lines


def setup_names(figures: dict) -> list[str]:
    """Return the replica setups measured, in table order."""
    return [name for name in SETUPS if name in team(figures).get("setups", {})]


def setup_label(figures: dict, name: str) -> str:
    """Return a setup in words: 2 replicas x 1 worker, nginx."""
    found = team(figures).get("setups", {}).get(name, {})
    replicas, workers = found.get("replicas", NA), found.get("workers", NA)
    front = "nginx" if found.get("balanced", True) else "no nginx"
    plural = "s" * (replicas != 1), "s" * (workers != 1)
    return f"{replicas} replica{plural[0]} x {workers} worker{plural[1]}, {front}"


def setup_median(key: str, c: int, part: str | None = None) -> Callable[[dict, str], float | None]:
    """Return a reader of one wrk-run figure's median at a concurrency, for each setup."""

    def read(figures: dict, name: str) -> float | None:
        """Return the median of the figure over a setup's runs, None when not measured."""
        runs = team(figures).get("setups", {}).get(name, {}).get("load", {}).get(str(c), [])
        values = [run[key] if part is None else run[key].get(part) for run in runs if key in run]
        return median([v for v in values if v is not None])

    return read


REPLICA_FIGURES = (
    ("one-row req/s", "rps", None, 0),
    ("one-row p50, ms", "p50_ms", None, 2),
    ("one-row p99, ms", "p99_ms", None, 2),
    ("API CPU per request, ms", "cpu_ms_per_request", "api", 2),
    ("nginx CPU per request, ms", "cpu_ms_per_request", "nginx", 2),
    ("PostgreSQL CPU per request, ms", "cpu_ms_per_request", "postgres", 2),
    ("wrk CPU per request, ms", "cpu_ms_per_request", "wrk", 2),
    ("other work's CPU per request, ms", "cpu_ms_per_request", "other", 2),
    ("machine busy, %", "busy_percent", None, 0),
    ("busiest replica's share of API CPU", "busiest_replica_share", None, 2),
)


def replica_rows(figures: dict) -> list[Row]:
    """Return the rows of the replica table: each wrk figure at each concurrency."""
    conns = team(figures).get("connections", [])
    return [
        Row(f"{what}, {c} conn.", setup_median(key, c, part), digits)
        for what, key, part, digits in REPLICA_FIGURES
        for c in conns
    ]


def replica_goals(figures: dict) -> dict[str, Goal]:
    """Return the target of two replicas over one, per concurrency, by row name."""
    out = {}
    for c in team(figures).get("connections", []):
        read = setup_median("rps", c)
        got = ratio(read(figures, JUDGED_SETUP), read(figures, REFERENCE_SETUP))
        text = f">= {TARGET_REPLICA_RATIO:.2f}x: {JUDGED_SETUP} / {REFERENCE_SETUP}"
        out[f"one-row req/s, {c} conn."] = Goal(
            text, None if got is None else got >= TARGET_REPLICA_RATIO
        )
    return out


def team_measured(figures: dict) -> bool:
    """Return whether the team stage ran (rather than not at all, or skipped)."""
    return bool(team(figures)) and "skipped" not in team(figures)


def team_goals(figures: dict) -> list[Goal]:
    """Return every target of the team stage, none when it was not measured."""
    if not team_measured(figures):
        return []
    return [team_batch_goal(figures), *replica_goals(figures).values()]


def replica_table(figures: dict, name: Callable = setup_label) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the replica table: figures per setup, / one, targets."""
    names, targets = setup_names(figures), replica_goals(figures)
    others = [n for n in names if n != REFERENCE_SETUP] if REFERENCE_SETUP in names else []
    header = ["", *(f"{n}: {name(figures, n)}" for n in names)]
    header += [f"{n} / {REFERENCE_SETUP}" for n in others] + ["target", "result"]
    lines = []
    for row in replica_rows(figures):
        values = {n: row.read(figures, n) for n in names}
        cells = [row.name, *(fmt(values[n], row.digits) for n in names)]
        cells += [times(ratio(values[n], values[REFERENCE_SETUP])) for n in others]
        goal = targets.get(row.name)
        lines.append(cells + ([goal.text, VERDICTS[goal.met]] if goal else ["", ""]))
    return header, lines


def team_verdicts(figures: dict) -> list[str]:
    """Return one line per target of the team stage: the figure against it, and the verdict."""
    n = max(team_batches(figures), default=10_000)
    goal, rate = team_batch_goal(figures), team_batch_rate(figures, "postgresql", n)
    vs = ratio(rate, team_batch_rate(figures, "sqlite", n))
    lines = [
        f"{n:,}-row batches into PostgreSQL: {fmt(rate, 0)} rows/s, {times(vs)} SQLite's; "
        f"target {goal.text}: {VERDICTS[goal.met]}."
    ]
    for row, one in replica_goals(figures).items():
        read = setup_median("rps", int(row.split(", ")[1].split()[0]))
        got = ratio(read(figures, JUDGED_SETUP), read(figures, REFERENCE_SETUP))
        lines.append(
            f"{setup_label(figures, JUDGED_SETUP)} / {setup_label(figures, REFERENCE_SETUP)}, "
            f"{row}: {times(got)}; target {one.text}: {VERDICTS[one.met]}."
        )
    return lines


TEAM_NOTE = (
    "The team deployment on this one machine: our API (`python ml_serving.py`) on a "
    "PostgreSQL prediction log, and replicas of it behind nginx sharing that log and one "
    "tracking store (`bench/team.py`; alone, `python bench/run.py --team-only`). PostgreSQL "
    "{postgres} is a throwaway cluster (`tests/support/postgres.py`) set back to stock "
    "durability ({durability}): every commit is on disk before the API answers, as with a "
    "stock server. Measured {date} at {commit}; load average 1/5/15 min before / after: "
    "{loads}."
)
TEAM_LOG_NOTE = (
    "Our API with {workers} workers on the PostgreSQL log, beside the same API on an SQLite "
    "log, both on an empty log at the start; {rounds} rounds of 1,000- and 10,000-row "
    "`/predict/batch` POSTs (`requests`, body encoded beforehand), the order reversed each "
    "round, after one uncounted round. Rows/s is the batch's rows over its median time. "
    "Then, untimed, three more of the largest batches on each: the CPU each cost the API's "
    "process tree and PostgreSQL's (user + system time), which says where a batch's time "
    "goes, since the API waits for PostgreSQL's commit before it answers."
)
TEAM_REPLICA_NOTE = (
    "wrk's one-row `POST /predict` ({duration} s per run, {threads} thread(s), {repeats} "
    "rounds, the order reversed each round, after a warm-up) through nginx {nginx} with the "
    "repo's `{config}` (`least_conn`, kept-alive upstream connections, access log on) and "
    "one worker process, as `tests/support/nginx.py` runs it, one nginx per setup, to: "
    "`one`, one replica with {workers} workers; `two`, two replicas "
    "with {half} each, the same workers in all, so that `two / one` is what balancing and "
    "sharing the log and the store cost (the target); `two-full`, two replicas with "
    "{workers} each, twice the workers on the same cores; `direct`, the `one` replica "
    "without nginx, for what nginx costs. Every replica logs to the one PostgreSQL "
    "database and serves the champion of the one SQLite tracking store. CPU per request is "
    "the user + system time of each part's processes during the run over its requests; "
    "`other work` is the rest of the machine's busy time (other processes); the busiest "
    "replica's share of the API's CPU is 0.50 when nginx balances evenly."
)


def _team_note(figures: dict) -> list[str]:
    """Return the stage's notes: what ran, the durability, when; then the log's and replicas'."""
    found = team(figures)
    pg, nginx, setups = found.get("postgres", {}), found.get("nginx", {}), found.get("setups", {})
    loads = [
        ", ".join(f"{v:.2f}" for v in found.get(f"load_{k}") or []) or NA
        for k in ("before", "after")
    ]
    workers = found.get("workers", NA)
    return [
        TEAM_NOTE.format(
            postgres=pg.get("version", NA),
            durability=pg.get("durability", NA),
            date=found.get("date", NA),
            commit=found.get("commit", NA),
            loads=" / ".join(loads),
        ),
        TEAM_LOG_NOTE.format(workers=workers, rounds=found.get("batch_rounds", NA)),
        TEAM_REPLICA_NOTE.format(
            duration=found.get("duration_s", NA),
            threads=found.get("wrk_threads", NA),
            repeats=found.get("repeats", NA),
            nginx=nginx.get("version", NA),
            config=nginx.get("config", NA),
            workers=workers,
            half=setups.get(JUDGED_SETUP, {}).get("workers", NA),
        ),
    ]


def team_section(figures: dict) -> list[str]:
    """Return the lines of the team deployment section, heading included; none if not run."""
    found = team(figures)
    if not found:
        return []
    if "skipped" in found:
        return [TEAM_HEADING, "", f"Not measured: {found['skipped']}."]
    intro, log_note, replica_note = _team_note(figures)
    verdicts = team_verdicts(figures)
    return [
        TEAM_HEADING,
        "",
        intro,
        "",
        f"![batch rows/s per log, one-row req/s per setup]({TEAM_CHART})",
        "",
        "### The prediction log: PostgreSQL beside SQLite",
        "",
        log_note,
        "",
        *table(*team_log_table(figures)),
        "",
        verdicts[0],
        "",
        "### Replicas behind nginx",
        "",
        replica_note,
        "",
        *table(*replica_table(figures)),
        "",
        *(f"- {line}" for line in verdicts[1:]),
    ]


def with_team_section(text: str, figures: dict) -> str:
    """Return a report with its team section replaced by this run's (added if it had none).

    A run of the team stage alone leaves the rest of the report as the last full run wrote
    it; the section says when it was measured itself.
    """
    section = [*team_section(figures), ""]
    lines = text.splitlines() or ["# Benchmarks", ""]
    if TEAM_HEADING in lines:
        start = lines.index(TEAM_HEADING)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
    else:
        later = [i for i, line in enumerate(lines) if line in SECTIONS_AFTER_TEAM]
        start = end = later[0] if later else len(lines)
        if start == len(lines) and lines[-1]:
            section = ["", *section]
    return "\n".join([*lines[:start], *section, *lines[end:]]).rstrip("\n") + "\n"


def team_summary(figures: dict) -> list[str]:
    """Return the team stage's tables and verdicts as console lines (none if not run)."""
    found = team(figures)
    if not found:
        return []
    if "skipped" in found:
        return [f"team stage skipped: {found['skipped']}"]
    header, lines = replica_table(figures, lambda _, n: n)
    return [
        "team: prediction log",
        *_aligned(*team_log_table(figures)),
        "team: replicas behind nginx",
        *_aligned(header, lines),
        *team_verdicts(figures),
    ]


def markdown(figures: dict) -> str:
    """Return docs/BENCHMARKS.md for the figures."""
    judged = [*goals(figures).values(), log_size_goal(figures), *team_goals(figures)]
    verdicts = [goal.met for goal in judged]
    met, counted = verdicts.count(True), sum(v is not None for v in verdicts)
    peers = ", ".join(label(figures, n) for n in servers(figures) if n != "ours") or "nothing"
    cores = figures.get("machine", {}).get("cores", NA)
    intro = (
        f"Our API against {peers} on the same champion, measured {figures.get('date', NA)} by "
        f"`python bench/run.py` on a {cores}-core machine: {met} of {counted} measured targets "
        "met. Regenerate with `make bench`."
    )
    if skipped(figures):
        gone = _and([PEERS.get(n, n) for n in skipped(figures)])
        intro += f" Skipped, so not measured: {gone} (why: below the table)."
    profile = [*_before_after_lines(figures), *_profile_lines(figures)]
    by_log_size = _log_size_lines(figures)
    slow = _slow_client_lines(figures)
    gone = _skipped_lines(figures)
    sections = [
        ["# Benchmarks", "", intro],
        ["![requests/s, p50 latency and batch rows/s for each server](benchmarks.png)"],
        ["## Every figure, side by side (median of the runs)", "", *table(*comparison(figures))],
        ["## Skipped, not measured", "", *gone] if gone else [],
        ["## Slow clients", "", *slow] if slow else [],
        ["## Batch speed by log size", "", *by_log_size] if by_log_size else [],
        team_section(figures),
        [PROFILE_HEADING, "", PROFILE_NOTE, *profile] if profile else [],
        [MACHINE_HEADING, "", *_machine_lines(figures)],
        [NOTES_HEADING, "", *NOTES],
    ]
    return "\n".join(line for section in sections if section for line in [*section, ""])


def summary(figures: dict) -> str:
    """Return the table of figures, ratios and targets as console lines, servers by key."""
    header, lines = comparison(figures, lambda _, n: n)
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = []
    for line in [header, *lines]:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:-2], widths[1:-2], strict=True)]
        out.append("  ".join([*cells, *line[-2:]]).rstrip())
    if slow_client_table(figures)[1]:
        out += ["", "slow clients held", *_aligned(*slow_client_table(figures))]
    if log_sizes(figures):
        by_size = _aligned(*log_size_table(figures))
        out += ["", "batch speed by log size", *by_size, log_size_verdict(figures)]
    for name, reason in skipped(figures).items():
        out += ["", f"skipped {name}: {reason}"]
    if team(figures):
        out += ["", *team_summary(figures)]
    return "\n".join(out)


def _batch_panel(figures: dict, ax) -> None:
    """Draw the big batch's rows/s on each server and in process, and the target's line."""
    n = figures.get("batch_rows", 10_000)
    bars = [
        (label(figures, s), per_s(n, median(figures["servers"][s].get("batch_s"))), COLORS[s])
        for s in servers(figures)
    ]
    for kind, name, colour in (("pipeline", "pipeline", "#999"), ("fast", "FastPredictor", "#555")):
        bars.append((f"{name} in process", per_s(n * 1000, inprocess_ms(figures, kind, n)), colour))
    names = ["\n".join(textwrap.wrap(name, 11, break_long_words=False)) for name, _, _ in bars]
    drawn = ax.bar(names, [value or 0 for _, value, _ in bars], color=[c for *_, c in bars])
    ax.bar_label(drawn, labels=[f"{value or 0:,.0f}" for _, value, _ in bars], fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{n:,}-row batch, rows/s")
    ax.axhline(TARGET_BATCH_ROWS_S, color="grey", linestyle="--", linewidth=1)
    ax.annotate(
        f"target {TARGET_BATCH_ROWS_S:,} rows/s", (-0.4, TARGET_BATCH_ROWS_S * 1.05), fontsize=7
    )


def chart(figures: dict, path: Path) -> None:
    """Draw req/s and p50 latency by concurrency for each server, and batch rows/s."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state
    from matplotlib.ticker import FuncFormatter

    names, conns = servers(figures), connections(figures)
    fig = Figure(figsize=(14, 4.4), layout="constrained")
    rps_ax, p50_ax, batch_ax = fig.subplots(1, 3)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(conns))]
        for ax, key, digits in ((rps_ax, "rps", 0), (p50_ax, "p50_ms", 2)):
            values = [load_median(figures, name, c, key) or 0 for c in conns]
            bars = ax.bar(xs, values, width, label=label(figures, name), color=COLORS[name])
            ax.bar_label(bars, labels=[f"{v:,.{digits}f}" for v in values], fontsize=7)
    for ax, title in ((rps_ax, "one-row requests/s"), (p50_ax, "one-row p50 latency, ms (log)")):
        ax.set_xticks(range(len(conns)), [f"{c} conn." for c in conns])
        ax.set_title(title)
        ax.legend(fontsize=7)
    p50_ax.set_yscale("log")
    _batch_panel(figures, batch_ax)
    floor = inprocess_ms(figures, "pipeline", 1)
    if floor:
        p50_ax.axhline(floor, color="grey", linestyle="--", linewidth=1)
        p50_ax.annotate("in-process pipeline, 1 row", (-0.4, floor * 1.05), fontsize=7)
    numbers = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    for axis in (rps_ax.yaxis, batch_ax.yaxis, p50_ax.yaxis):
        axis.set_major_formatter(numbers)
    # Log scale: label the 2s and 5s between the powers of ten, not every minor tick.
    p50_ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")
    )
    peers = dict.fromkeys(label(figures, name).split(" (")[0] for name in names)
    fig.suptitle(f"penguins API: {' vs '.join(peers)}, {figures.get('date', '')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


TEAM_CHART = "benchmarks-team.png"  # beside the report's own chart


def team_chart(figures: dict, path: Path) -> None:
    """Draw the team stage: batch rows/s per log, and one-row req/s per setup and concurrency."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    logs_ax, replicas_ax = fig.subplots(1, 2, width_ratios=(2, 3))
    batches = team_batches(figures)
    for i, (log, colour) in enumerate((("sqlite", "#8fb9d6"), ("postgresql", "#2a7ab0"))):
        values = [team_batch_rate(figures, log, n) or 0 for n in batches]
        xs = [k + (i - 0.5) * 0.4 for k in range(len(batches))]
        bars = logs_ax.bar(xs, values, 0.4, label=LOGS[log], color=colour)
        logs_ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7)
    logs_ax.set_xticks(range(len(batches)), [f"{n:,} rows" for n in batches])
    logs_ax.axhline(TARGET_TEAM_BATCH_ROWS_S, color="grey", linestyle="--", linewidth=1)
    target = f"target {TARGET_TEAM_BATCH_ROWS_S:,} rows/s"
    logs_ax.annotate(target, (-0.4, TARGET_TEAM_BATCH_ROWS_S * 1.03), fontsize=7)
    logs_ax.set_title("/predict/batch into each log, rows/s")
    logs_ax.legend(fontsize=7)
    names, conns = setup_names(figures), team(figures).get("connections", [])
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [setup_median("rps", c)(figures, name) or 0 for c in conns]
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(conns))]
        bars = replicas_ax.bar(xs, values, width, label=f"{name}: {setup_label(figures, name)}")
        replicas_ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7)
    replicas_ax.set_xticks(range(len(conns)), [f"{c} conn." for c in conns])
    replicas_ax.set_title("one-row /predict, req/s")
    replicas_ax.legend(fontsize=7, loc="lower right")
    for axis in (logs_ax.yaxis, replicas_ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.suptitle(f"penguins API, team deployment: {team(figures).get('date', '')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
