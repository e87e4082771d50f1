"""What the monitoring tests share: the monitoring files read as data, and a filled log.

prometheus.yml, the rule files and the dashboards are read the way the tests need
them. :func:`unanswered_queries`, :func:`instances_missing` and
:func:`queries_split_by_instance` run the dashboards' queries against a live Prometheus
(one API instance or several). :func:`log_inputs` writes predictions into a prediction
log the way the API does.
"""

from __future__ import annotations

import bisect
import json
import re
import time
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd
import requests
import yaml

from penguins.features import FEATURES, TARGET
from penguins.predlog import PredictionLog, Predictions

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO / "prometheus.yml"
# The team deployment's Prometheus configurations (service discovery of the replicas),
# next to the rules: prometheus/team*.yml.
TEAM_CONFIG_GLOB = "prometheus/team*.yml"
RULES_DIR = REPO / "prometheus" / "rules"
RULE_TESTS_DIR = REPO / "prometheus" / "tests"
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"
COMPOSE_FILE = REPO / "docker-compose.yml"

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
DASHBOARD_UIDS = {"penguins-ml-api", "penguins-system"}
JOBS = {"penguins-api", "penguins-exporter", "node", "prometheus"}
# Panels of the ML API dashboard titled "... by instance" show one series (or row) per
# API replica; the two-replica tests check that each replica appears in every one.
INSTANCE_PANEL_SUFFIX = " by instance"

# The public metric names (docs/serving.md, docs/monitoring.md). Histograms also expose
# _bucket, _sum and _count.
API_COUNTERS_AND_GAUGES = {
    "ml_requests_total",
    "ml_predictions_total",
    "ml_model_accuracy",
    "ml_model_info",
    "ml_feedback_total",
    "ml_model_reloads_total",
}
API_HISTOGRAMS = {"ml_request_duration_seconds", "ml_prediction_confidence", "ml_batch_size"}
EXPORTER_ML_METRICS = {"ml_model_live_accuracy", "ml_feature_drift_psi", "ml_drift_detected"}
EXPORTER_SYSTEM_METRICS = {
    "system_cpu_usage_percent",
    "system_memory_usage_percent",
    "system_disk_usage_percent",
}
PUBLIC_METRICS = (
    API_COUNTERS_AND_GAUGES
    | {f"{name}{suffix}" for name in API_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | EXPORTER_ML_METRICS
    | EXPORTER_SYSTEM_METRICS
)
# Series Prometheus makes itself: scrape health and alert state.
SYNTHETIC_METRICS = {"up", "ALERTS"}
PUBLIC_ALERTS = {
    "MLApiDown",
    "MLApiReplicaDown",
    "MLApiHighErrorRate",
    "MLApiHighLatency",
    "MLModelLiveAccuracyLow",
    "MLFeatureDrift",
    "MLExporterDown",
    "HostHighCpu",
    "HostHighMemory",
    "HostDiskAlmostFull",
}

PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# Possessive `*+`: without it a function name backtracks to a shorter "metric" (`su` of `sum(`).
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*+)(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (functions and labels left out)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in PROMQL_KEYWORDS}


def grouping_labels(expr: str) -> list[set[str]]:
    """Return the label set of each `by (...)` clause of a PromQL expression."""
    return [
        {label.strip() for label in labels.split(",") if label.strip()}
        for labels in re.findall(r"\bby\s*\(([^)]*)\)", expr)
    ]


def instance_level(name: str) -> bool:
    """Whether a recording rule keeps one series per instance (its level names `instance`)."""
    return ":" in name and "instance" in name.split(":")[0].split("_")


def load_yaml(path: Path) -> dict:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text())


def scrape_configs(path: Path = PROMETHEUS_CONFIG) -> dict[str, dict]:
    """Return job name -> scrape config of a Prometheus configuration (prometheus.yml)."""
    return {job["job_name"]: job for job in load_yaml(path)["scrape_configs"]}


def prometheus_configs() -> list[Path]:
    """Return every Prometheus configuration: prometheus.yml, then the team ones, sorted."""
    return [PROMETHEUS_CONFIG, *sorted(REPO.glob(TEAM_CONFIG_GLOB))]


def rule_files() -> list[Path]:
    """Return the rule files, sorted."""
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> list[dict]:
    """Return every rule (recording and alerting) of every rule file."""
    return [
        rule
        for path in rule_files()
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def recording_rules() -> dict[str, str]:
    """Return recording rule name -> expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def alert_rules() -> dict[str, dict]:
    """Return alert name -> rule."""
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def underlying_metrics(names: set[str], recorded: dict[str, str]) -> set[str]:
    """Return ``names`` with every recording rule replaced by the metrics it is computed from."""
    out: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in recorded:
            pending.extend(metric_names(recorded[name]) - out)
        out.add(name)
    return out


def dashboards() -> dict[str, dict]:
    """Return file name -> parsed dashboard JSON, for every dashboard file."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels(dashboard: dict) -> list[dict]:
    """Return every panel of a dashboard, including panels nested in collapsed rows."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def query_panels(dashboard: dict) -> list[dict]:
    """Return the panels that show data (not rows or text)."""
    return [panel for panel in panels(dashboard) if panel.get("type") not in ("row", "text")]


def panel_queries() -> list[tuple[str, str, str]]:
    """Return (dashboard uid, panel title, expr) for every query of every dashboard."""
    return [
        (dashboard["uid"], panel["title"], target["expr"])
        for dashboard in dashboards().values()
        for panel in query_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def instance_queries() -> list[tuple[str, str, str]]:
    """Return (dashboard uid, panel title, expr) of the panels that show each API replica."""
    return [query for query in panel_queries() if query[1].endswith(INSTANCE_PANEL_SUFFIX)]


def query_prometheus(prometheus_url: str, expr: str, at: float | None = None) -> list[dict]:
    """Return the result vector of an instant query, now or at the Unix time ``at``."""
    params = {"query": expr} if at is None else {"query": expr, "time": str(at)}
    resp = requests.get(f"{prometheus_url}/api/v1/query", params=params, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]["result"]


def unanswered_queries(
    prometheus_url: str, timeout: float = 60.0, uids: Collection[str] = DASHBOARD_UIDS
) -> list[str]:
    """Return "uid / title: expr" of each panel query that returns no data within ``timeout``.

    Every query of the dashboards ``uids`` (both by default) is asked again each second
    until all have answered or the time is up, so rules that need a few evaluations
    after traffic get them.
    """
    missing = [query for query in panel_queries() if query[0] in uids]
    deadline = time.monotonic() + timeout
    while True:
        missing = [q for q in missing if not query_prometheus(prometheus_url, q[2])]
        if not missing or time.monotonic() >= deadline:
            return [f"{uid} / {title}: {expr}" for uid, title, expr in missing]
        time.sleep(1)


def instances_missing(
    prometheus_url: str, instances: Collection[str], timeout: float = 60.0
) -> list[str]:
    """Return "uid / title: missing [...]" for each per-instance panel not showing every one.

    ``instances`` are the API replicas' ``instance`` labels (``10.77.1.2:5000``); each
    panel titled "... by instance" must have a series with each of them within ``timeout``.
    """
    wanted = set(instances)
    missing = {(uid, title, expr): wanted for uid, title, expr in instance_queries()}
    deadline = time.monotonic() + timeout
    while True:
        for key in list(missing):
            shown = {r["metric"].get("instance") for r in query_prometheus(prometheus_url, key[2])}
            missing[key] = wanted - shown
        missing = {key: left for key, left in missing.items() if left}
        if not missing or time.monotonic() >= deadline:
            return [
                f"{uid} / {title}: missing {sorted(left)}"
                for (uid, title, _), left in missing.items()
            ]
        time.sleep(1)


def queries_split_by_instance(prometheus_url: str) -> list[str]:
    """Return "uid / title: expr" of ML API panel queries whose series carry an ``instance``.

    Outside the per-instance panels (and the alerts table, one row per alert) a line
    stands for the whole job: a series with an ``instance`` label there would become
    one line per replica.
    """
    return [
        f"{uid} / {title}: {expr}"
        for uid, title, expr in panel_queries()
        if uid == "penguins-ml-api"
        and not title.endswith(INSTANCE_PANEL_SUFFIX)
        and "ALERTS" not in metric_names(expr)
        and any("instance" in r["metric"] for r in query_prometheus(prometheus_url, expr))
    ]


def log_inputs(
    log: PredictionLog,
    inputs: pd.DataFrame,
    algorithm: str = "random_forest",
    version: str = "1",
    predicted: Sequence[str] | None = None,
    created_at: float = 1.0,
) -> list[str]:
    """Record one prediction per input row (predicting the true species unless told); return ids."""
    ids = [uuid.uuid4().hex for _ in range(len(inputs))]
    species = list(predicted) if predicted is not None else list(inputs[TARGET])
    log.record_predictions(
        Predictions(
            ids=ids,
            created_at=created_at,
            algorithm=algorithm,
            model_version=version,
            rows=inputs[list(FEATURES)].to_numpy(dtype="float64").tolist(),
            species=species,
            confidences=[0.9] * len(ids),
        )
    )
    return ids


def histogram_quantile(q: float, upper_bounds: Sequence[float], values: Sequence[float]) -> float:
    """Return the q-quantile Prometheus' histogram_quantile reads from ``values`` in these buckets.

    The buckets are cumulative counts at each upper bound plus +Inf; the quantile is
    interpolated linearly inside the bucket that holds its rank, the first bucket
    starting at 0, and a rank in the +Inf bucket reads the largest finite bound.
    """
    bounds = list(upper_bounds)
    ordered = sorted(values)
    cumulative = [bisect.bisect_right(ordered, bound) for bound in bounds]
    rank = q * len(ordered)
    index = bisect.bisect_left(cumulative, rank)
    if index == len(bounds):
        return bounds[-1]
    start = 0.0 if index == 0 else bounds[index - 1]
    before = 0 if index == 0 else cumulative[index - 1]
    return start + (bounds[index] - start) * (rank - before) / (cumulative[index] - before)
