"""Turn a figures dict into the printed summary, docs/BENCHMARKS.md and the PNG chart.

Everything here is pure: it reads the figures that bench/suite.py gathered (plain
JSON-ready dicts and lists) and measures nothing itself. A missing figure shows as
"n/a" and its target as not measured.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

NA = "n/a"
# "mlflow-1w" is `mlflow models serve` with one worker. uvicorn's --workers N path leaves
# Nagle's algorithm on (TCP_NODELAY unset), which costs ~40 ms per keep-alive request,
# so the one-worker figures show what mlflow does without that bug.
ORDER = ("ours", "mlflow", "mlflow-1w")
BASELINES = ("mlflow", "mlflow-1w")
COLORS = {"ours": "#2a7ab0", "mlflow": "#d9822b", "mlflow-1w": "#f0b77a"}

# The goals of issue 6, in one place.
TARGET_RATIO_AT_8 = 10.0
TARGET_P50_MARGIN_MS = 0.5
TARGET_BATCH_ROWS_S = 250_000
TARGET_TRAINING_S = 20.0
TARGET_PSS_MB = 400.0
TARGET_SCRAPE_MS = 5.0
# Other work above this share of the machine during a wrk run: redo the run, then say so.
BUSY_PCT = 10.0


@dataclass(frozen=True)
class Target:
    """One goal and how the run did against it."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        """Return met, missed or not measured."""
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def median(values: list[float] | None) -> float | None:
    """Return the median of a list, or None when it is empty or missing."""
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number, thousands separated from 1000 up, or n/a."""
    if value is None:
        return NA
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    """Format a ratio as 12.3x, or n/a."""
    return NA if value is None else f"{value:.1f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    """Return a / b, or None when either is missing or b is zero."""
    if a is None or not b:
        return None
    return a / b


def servers(figures: dict) -> list[str]:
    """Return the servers measured in this run, in table order."""
    present = set(figures.get("load", {})) | set(figures.get("cold_start_s", {}))
    return [name for name in ORDER if name in present]


def label(figures: dict, name: str) -> str:
    """Return a server's name for tables and the chart, with its worker count."""
    workers = figures.get("settings", {}).get("workers", NA)
    return {
        "ours": f"ours ({workers} workers)",
        "mlflow": f"mlflow serve ({workers} workers)",
        "mlflow-1w": "mlflow serve (1 worker)",
    }.get(name, name)


def connections(figures: dict) -> list[int]:
    """Return the concurrencies of the run."""
    return figures.get("settings", {}).get("connections", [1, 8, 32])


def load_median(figures: dict, server: str, conns: int | str, key: str) -> float | None:
    """Return the median of one wrk figure over the repeats of a server and concurrency."""
    runs = figures.get("load", {}).get(server, {}).get(str(conns), [])
    return median([run[key] for run in runs if key in run])


def batch_rows_per_s(figures: dict, server: str) -> float | None:
    """Return rows/s of the median end-to-end batch POST of a server."""
    batch = figures.get("batch", {})
    seconds = median(batch.get(server))
    return batch.get("rows", 0) / seconds if seconds else None


def inprocess_ms(figures: dict, kind: str, rows: int | str) -> float | None:
    """Return the in-process ms per predict_proba call of a kind (pipeline, fast) and size."""
    return figures.get("inprocess_ms", {}).get(kind, {}).get(str(rows))


def inprocess_rows_per_s(figures: dict, kind: str, rows: int) -> float | None:
    """Return in-process rows/s for a batch size."""
    ms = inprocess_ms(figures, kind, rows)
    return rows / ms * 1000 if ms else None


def memory(figures: dict, server: str, key: str, when: str = "memory") -> float | None:
    """Return a memory figure (rss_mb, pss_mb, uss_mb, processes) of a server's tree.

    ``when`` is "memory" (warm, after the one-row runs) or "memory_after_batch".
    """
    return figures.get(when, {}).get(server, {}).get(key)


def _target(name: str, goal: str, value: float | None, ok: bool, text: str) -> Target:
    """Build a Target, not measured when the value is missing."""
    if value is None:
        return Target(name, goal, NA, None)
    return Target(name, goal, text, ok)


def targets(figures: dict) -> list[Target]:
    """Evaluate the goals of issue 6 against the figures."""
    found = []
    ours_8 = load_median(figures, "ours", 8, "rps")
    for baseline in BASELINES:
        r = ratio(ours_8, load_median(figures, baseline, 8, "rps"))
        name = f"req/s at 8 connections vs {label(figures, baseline)}"
        goal = f">= {TARGET_RATIO_AT_8:.0f}x"
        found.append(_target(name, goal, r, r is not None and r >= TARGET_RATIO_AT_8, times(r)))
    p50 = load_median(figures, "ours", 1, "p50_ms")
    floor = inprocess_ms(figures, "pipeline", 1)
    limit = None if floor is None else floor + TARGET_P50_MARGIN_MS
    found.append(
        _target(
            "one-row p50 at 1 connection",
            f"<= in-process pipeline + {TARGET_P50_MARGIN_MS} ms = {fmt(limit)} ms",
            None if limit is None else p50,
            p50 is not None and limit is not None and p50 <= limit,
            f"{fmt(p50)} ms",
        )
    )
    batch = batch_rows_per_s(figures, "ours")
    rows = figures.get("batch", {}).get("rows", 10_000)
    found.append(
        _target(
            f"{rows:,}-row /predict/batch, end to end",
            f">= {TARGET_BATCH_ROWS_S:,} rows/s",
            batch,
            batch is not None and batch >= TARGET_BATCH_ROWS_S,
            f"{fmt(batch)} rows/s",
        )
    )
    training = figures.get("training_s")
    found.append(
        _target(
            "`python modelling.py` wall time",
            f"<= {TARGET_TRAINING_S:.0f} s",
            training,
            training is not None and training <= TARGET_TRAINING_S,
            f"{fmt(training, 1)} s",
        )
    )
    pss = memory(figures, "ours", "pss_mb")
    workers = figures.get("settings", {}).get("workers", NA)
    found.append(
        _target(
            f"serving tree PSS, {workers} workers, warm",
            f"<= {TARGET_PSS_MB:.0f} MB",
            pss,
            pss is not None and pss <= TARGET_PSS_MB,
            f"{fmt(pss, 0)} MB",
        )
    )
    scrape = median(figures.get("metrics_scrape_ms"))
    found.append(
        _target(
            "`/metrics` scrape, median",
            f"<= {TARGET_SCRAPE_MS:.0f} ms",
            scrape,
            scrape is not None and scrape <= TARGET_SCRAPE_MS,
            f"{fmt(scrape)} ms",
        )
    )
    return found


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return the lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _targets_section(figures: dict) -> list[str]:
    """Return the lines of the targets table."""
    rows = [[t.name, t.goal, t.measured, t.verdict] for t in targets(figures)]
    return ["## Targets", "", *table(["target", "goal", "measured", "result"], rows)]


def _load_section(figures: dict) -> list[str]:
    """Return the lines of the one-row request tables (medians over the repeats)."""
    names = servers(figures)
    baselines = [b for b in BASELINES if b in names and "ours" in names]
    rps_rows, latency_rows, cpu_rows = [], [], []
    for c in connections(figures):
        cpu_rows.append(
            [str(c)] + [fmt(load_median(figures, n, c, "cpu_ms_per_request")) for n in names]
        )
        rps = {n: load_median(figures, n, c, "rps") for n in names}
        rps_rows.append(
            [str(c)]
            + [fmt(rps[n], 0) for n in names]
            + [times(ratio(rps["ours"], rps[b])) for b in baselines]
        )
        cells = [str(c)]
        for n in names:
            p50, p99 = (load_median(figures, n, c, k) for k in ("p50_ms", "p99_ms"))
            cells.append(f"{fmt(p50)} / {fmt(p99)}")
        latency_rows.append(cells)
    rps_header = ["connections", *(label(figures, n) for n in names)]
    rps_header += [f"ours / {label(figures, b)}" for b in baselines]
    return [
        "## One-row requests (wrk; median of the runs)",
        "",
        "Ours: `POST /predict` with one sample. mlflow: `POST /invocations` with "
        '`{"dataframe_records": [sample]}`. Same row, same registered model version.',
        "",
        "Requests per second:",
        "",
        *table(rps_header, rps_rows),
        "",
        "Latency p50 / p99, ms:",
        "",
        *table(["connections", *(label(figures, n) for n in names)], latency_rows),
        "",
        "Server CPU per request, ms (user + system time of the whole process tree during the "
        "run, divided by its requests; 2 cores give at most 2,000 ms of CPU per second):",
        "",
        *table(["connections", *(label(figures, n) for n in names)], cpu_rows),
    ]


def _inprocess_section(figures: dict) -> list[str]:
    """Return the lines of the in-process predict_proba table."""
    rows = []
    for size in figures.get("settings", {}).get("sizes", [1, 1000, 10000]):
        pipe, fast = inprocess_ms(figures, "pipeline", size), inprocess_ms(figures, "fast", size)
        rows.append(
            [
                f"{size:,}",
                fmt(pipe, 3),
                fmt(fast, 3),
                times(ratio(pipe, fast)),
                fmt(inprocess_rows_per_s(figures, "pipeline", size), 0),
                fmt(inprocess_rows_per_s(figures, "fast", size), 0),
            ]
        )
    header = ["rows", "pipeline ms", "FastPredictor ms", "speed-up"]
    header += ["pipeline rows/s", "FastPredictor rows/s"]
    return [
        "## In-process predict_proba (median per call)",
        "",
        "Pipeline: the champion from `mlflow.sklearn.load_model`, on a pandas DataFrame. "
        "FastPredictor: `penguins.fastpath` on a numpy array. Inputs are built before timing.",
        "",
        *table(header, rows),
    ]


def _serving_section(figures: dict) -> list[str]:
    """Return the lines comparing batch, start-up, memory and /metrics across servers."""
    names = servers(figures)
    batch = figures.get("batch", {})
    rows_n = batch.get("rows", 10_000)
    cold = figures.get("cold_start_s", {})
    scrapes = figures.get("metrics_scrape_ms") or []
    rows = [
        [f"{rows_n:,}-row batch, median s"] + [fmt(median(batch.get(n)), 3) for n in names],
        [f"{rows_n:,}-row batch, rows/s"] + [fmt(batch_rows_per_s(figures, n)) for n in names],
        ["cold start, spawn to first 200, s"] + [fmt(cold.get(n)) for n in names],
        ["spawn to every worker loaded and idle, s"]
        + [fmt(figures.get("settled_s", {}).get(n)) for n in names],
    ]
    for key, name in (("rss_mb", "RSS"), ("pss_mb", "PSS"), ("uss_mb", "USS")):
        rows.append(
            [f"process tree {name}, warm, MB"] + [fmt(memory(figures, n, key), 0) for n in names]
        )
    for key, name in (("pss_mb", "PSS"), ("uss_mb", "USS")):
        rows.append(
            [f"process tree {name} after the {rows_n:,}-row batches, MB"]
            + [fmt(memory(figures, n, key, "memory_after_batch"), 0) for n in names]
        )
    rows.append(
        ["processes in the tree"] + [fmt(memory(figures, n, "processes"), 0) for n in names]
    )
    rows.append(
        [f"`/metrics` scrape, median of {len(scrapes)}, ms"]
        + [fmt(median(scrapes)) if n == "ours" else NA for n in names]
    )
    ours_b = batch_rows_per_s(figures, "ours")
    ratios = [
        f"ours / {label(figures, b)}: {times(ratio(ours_b, batch_rows_per_s(figures, b)))}"
        for b in BASELINES
        if b in names and "ours" in names
    ]
    return [
        "## Batch, start-up, memory and /metrics",
        "",
        *table(["", *(label(figures, n) for n in names)], rows),
        "",
        f"Batch rows/s ratio: {'; '.join(ratios) or NA}. Ours: `POST /predict/batch` "
        '`{"samples": [...]}`; mlflow: `POST /invocations` `{"dataframe_records": [...]}`.',
        "",
        f"`python modelling.py` into a temporary store: {fmt(figures.get('training_s'), 1)} s "
        "wall time, interpreter start to exit.",
    ]


def _profile_lines(found: dict) -> list[str]:
    """Return the lines of one py-spy breakdown."""
    buckets = [[name, f"{share:.1f} %"] for name, share in found["buckets"].items()]
    own = [[f"`{frame}`", f"{share:.1f} %"] for frame, share in found["own_code"]]
    return [
        f"### {found.get('what', NA)}",
        "",
        f"py-spy sampled every worker for {fmt(found.get('seconds'), 0)} s at "
        f"{found.get('rate', NA)}: {found['busy_samples']:,} samples inside request handling.",
        "",
        *table(["bucket", "share of request samples"], buckets),
        "",
        "Our own functions, share of the request samples spent inside them (inclusive):",
        "",
        *table(["function (file)", "share"], own),
    ]


def _profile_section(figures: dict) -> list[str]:
    """Return the lines of the py-spy breakdowns of our API, if there are any."""
    found = [p for p in (figures.get("profile") or {}).values() if p.get("busy_samples")]
    if not found:
        return []
    lines = [
        "## Where our API spends its time (py-spy)",
        "",
        "Each sample counts once: for the library it is in (everything scikit-learn calls "
        "is the model's time), else for the innermost layer of its stack (our code, Flask, "
        "gunicorn). Sampling on a shared machine is noisy: a few points either way.",
    ]
    for one in found:
        lines += ["", *_profile_lines(one)]
    return lines


def _settings_text(settings: dict) -> str:
    """Describe the run's settings in one line."""
    workers, duration = settings.get("workers", NA), settings.get("duration_s", NA)
    threads, repeats = settings.get("wrk_threads", NA), settings.get("repeats", NA)
    return (
        f"{workers} workers per server; wrk {duration} s per run, {threads} wrk thread(s), "
        f"{repeats} runs per server and concurrency, interleaved"
    )


def busy_note(figures: dict) -> str | None:
    """Return a warning when other work took a noticeable share of the CPU during the runs."""
    shares = [run["other_cpu_pct"] for run in figures.get("runs", []) if "other_cpu_pct" in run]
    busy = [share for share in shares if share > BUSY_PCT]
    if not busy:
        return None
    return (
        f"The machine was busy: in {len(busy)} of {len(shares)} wrk runs other work took more "
        f"than {BUSY_PCT:.0f} % of the CPU even at their quietest attempt (up to "
        f"{max(busy):.0f} %; see the run list). Those runs are slower than the servers are."
    )


def _loads(values: list[float] | None) -> str:
    """Format load averages as 1.2, 0.8, 0.5."""
    return ", ".join(f"{v:.2f}" for v in values) if values else NA


def _machine_section(figures: dict) -> list[str]:
    """Return the lines describing the machine, versions and settings."""
    machine = figures.get("machine", {})
    versions = figures.get("versions", {})
    model = figures.get("model", {})
    before, after = figures.get("load_before"), figures.get("load_after")
    packages = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python")
    rows = [
        ["date", figures.get("date", NA)],
        ["CPU", f"{machine.get('cpu', NA)}, {machine.get('cores', NA)} cores"],
        ["memory", f"{machine.get('memory_gb', NA)} GB"],
        ["OS", str(machine.get("os", NA))],
        ["load average 1/5/15 min, before / after", f"{_loads(before)} / {_loads(after)}"],
        [
            "CPU busy with other work, 1 s before / after the run",
            f"{fmt(figures.get('cpu_busy_before'), 0)} % / "
            f"{fmt(figures.get('cpu_busy_after'), 0)} %",
        ],
        ["Python", versions.get("python", NA)],
        ["packages", packages or NA],
        [
            "model",
            f"`{model.get('uri', NA)}` = version {model.get('version', NA)} "
            f"({model.get('algorithm', NA)})",
        ],
        ["settings", _settings_text(figures.get("settings", {}))],
    ]
    return ["## Machine and settings", "", *table(["", ""], rows)]


def _runs_section(figures: dict) -> list[str]:
    """Return the lines listing every wrk run in the order it ran."""
    rows = [
        [
            str(run["order"]),
            label(figures, run["server"]),
            str(run["connections"]),
            fmt(run["rps"], 0),
            fmt(run["p50_ms"]),
            fmt(run["p99_ms"]),
            str(run["requests"]),
            str(run["non_2xx"] + run["socket_errors"]),
            fmt(run.get("other_cpu_pct"), 0),
            str(run.get("attempts", 1)),
        ]
        for run in figures.get("runs", [])
    ]
    header = ["#", "server", "connections", "req/s", "p50 ms", "p99 ms", "requests", "errors"]
    header += ["other work, % CPU", "attempts"]
    return ["### Every wrk run, in order", "", *table(header, rows)]


NOTES = [
    "## How it was measured",
    "",
    "- One run of `python bench/run.py` (`make bench`) makes every figure here. The load "
    "generator (wrk, one thread unless `--wrk-threads`) shares the cores with the servers.",
    "- The servers run side by side on free ports of 127.0.0.1, started as users start "
    "them (`python ml_serving.py --workers N`; `mlflow models serve --env-manager local "
    "--workers N`), each in a session of its own; the harness stops every process group "
    "at the end, also on failure or Ctrl-C.",
    "- wrk runs are interleaved: each repeat runs every concurrency on every server in "
    "turn, the first server alternating between repeats; the tables give the median over "
    "the repeats. A short warm-up run per server comes first and is not counted. Any "
    "non-2xx answer or socket error fails the run.",
    "- The machine is shared. For each run the harness counts the CPU time of every other "
    "process (the machine's process time less our servers' trees and wrk). A run where "
    f"that passes {BUSY_PCT:.0f} % of the machine is redone (`--busy-retries`, default "
    "1), and the attempt with the least other work is kept, whatever its speed.",
    "- `mlflow models serve --workers N` (N > 1) runs uvicorn's multiprocess supervisor, "
    "whose listening socket is created without `IPPROTO_TCP`, so asyncio never sets "
    "`TCP_NODELAY` on accepted connections (uvicorn issue #3149, open, uvicorn "
    "0.54). Its headers and body leave in two writes, and on a keep-alive connection the "
    "body waits for the client's delayed ACK: ~40 ms per request. That is what users get "
    "with the same worker count, so it is measured; the one-worker column shows mlflow "
    "without it.",
    "- Our `/predict` returns probabilities and records each prediction in the SQLite "
    "prediction log before answering; mlflow returns the pyfunc `predict` labels and "
    "records nothing.",
    "- Batch: the same rows POSTed with `requests` (body encoded beforehand, answer "
    "parsed), one warm-up, then the median of the repeats.",
    "- Memory: RSS, PSS and USS from psutil `memory_full_info`, summed over the server's "
    "whole process tree (launcher, master, workers, helpers): warm, right after the "
    "one-row runs (the target's figure), and again after the big batches. PSS splits "
    "shared pages between the processes that share them; RSS counts them in each.",
    "- `/metrics`: `GET` with a `requests` session after the traffic, to the last byte.",
    "- Latencies are wrk's own histogram (`--latency`), read by its lua `done()` hook.",
]


def markdown(figures: dict) -> str:
    """Return docs/BENCHMARKS.md for the figures."""
    found = targets(figures)
    met = sum(t.met is True for t in found)
    measured = sum(t.met is not None for t in found)
    intro = [
        "# Benchmarks",
        "",
        f"Our API against `mlflow models serve` on the same champion, measured "
        f"{figures.get('date', NA)} by `python bench/run.py` on a "
        f"{figures.get('machine', {}).get('cores', NA)}-core machine: {met} of {measured} "
        "measured targets met. Regenerate with `make bench`.",
        "",
        "![requests/s, p50 latency and batch rows/s for each server](benchmarks.png)",
    ]
    note = busy_note(figures)
    if note:
        intro += ["", f"**{note}**"]
    sections = [
        intro,
        _targets_section(figures),
        _load_section(figures),
        _inprocess_section(figures),
        _serving_section(figures),
        _profile_section(figures),
        _machine_section(figures),
        _runs_section(figures),
        NOTES,
    ]
    lines = [line for section in sections if section for line in [*section, ""]]
    return "\n".join(lines[:-1]) + "\n"


def summary(figures: dict) -> str:
    """Return the main figures, ratios and targets as console lines."""
    names = servers(figures)
    lines = ["req/s and p50 ms by connections:"]
    for c in connections(figures):
        cells = [
            f"{n} {fmt(load_median(figures, n, c, 'rps'), 0)} req/s "
            f"{fmt(load_median(figures, n, c, 'p50_ms'))} ms"
            for n in names
        ]
        lines.append(f"  c={c:<3} " + " | ".join(cells))
        ours = load_median(figures, "ours", c, "rps")
        ratios = [
            f"ours/{b} {times(ratio(ours, load_median(figures, b, c, 'rps')))}"
            for b in BASELINES
            if b in names and "ours" in names
        ]
        if ratios:
            lines.append("        " + ", ".join(ratios))
    batch = [f"{n} {fmt(batch_rows_per_s(figures, n))}" for n in names]
    lines.append("batch rows/s: " + ", ".join(batch))
    lines.append(
        f"in-process 1 row: pipeline {fmt(inprocess_ms(figures, 'pipeline', 1), 3)} ms, "
        f"fast {fmt(inprocess_ms(figures, 'fast', 1), 3)} ms"
    )
    note = busy_note(figures)
    if note:
        lines.append(f"NOTE: {note}")
    lines.append("targets:")
    lines += [f"  {t.verdict:<12} {t.name}: {t.measured} (goal {t.goal})" for t in targets(figures)]
    return "\n".join(lines)


def chart(figures: dict, path: Path) -> None:
    """Draw req/s and p50 latency by concurrency for each server, and batch rows/s."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state
    from matplotlib.ticker import FuncFormatter

    names = servers(figures)
    conns = connections(figures)
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
    floor = inprocess_ms(figures, "pipeline", 1)
    if floor:
        p50_ax.axhline(floor, color="grey", linestyle="--", linewidth=1)
        p50_ax.annotate("in-process pipeline, 1 row", (-0.4, floor * 1.1), fontsize=7)
    rows_n = figures.get("batch", {}).get("rows", 10_000)
    bars_spec = [(label(figures, n), batch_rows_per_s(figures, n), COLORS[n]) for n in names]
    bars_spec += [
        ("pipeline\nin-process", inprocess_rows_per_s(figures, "pipeline", rows_n), "#999999"),
        ("FastPredictor\nin-process", inprocess_rows_per_s(figures, "fast", rows_n), "#555555"),
    ]
    values = [v or 0 for _, v, _ in bars_spec]
    bars = batch_ax.bar(
        [n.replace(" (", "\n(") for n, _, _ in bars_spec], values, color=[c for *_, c in bars_spec]
    )
    batch_ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7)
    batch_ax.axhline(TARGET_BATCH_ROWS_S, color="grey", linestyle="--", linewidth=1)
    batch_ax.annotate(
        f"target {TARGET_BATCH_ROWS_S:,} rows/s", (-0.4, TARGET_BATCH_ROWS_S * 1.02), fontsize=7
    )
    batch_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    rps_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    batch_ax.tick_params(axis="x", labelsize=7)
    batch_ax.set_title(f"{rows_n:,}-row batch, rows/s")
    fig.suptitle(f"penguins API vs mlflow models serve, {figures.get('date', '')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
