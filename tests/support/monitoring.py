"""What the monitoring tests share: the monitoring files read as data, and a filled log.

prometheus.yml, the rule files and the dashboards are read the way the tests need
them; :func:`log_inputs` writes predictions into a prediction log the way the API does.
"""

from __future__ import annotations

import bisect
import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from penguins.features import FEATURES, TARGET
from penguins.predlog import PredictionLog, Predictions

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO / "prometheus.yml"
RULES_DIR = REPO / "prometheus" / "rules"
RULE_TESTS_DIR = REPO / "prometheus" / "tests"
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"
COMPOSE_FILE = REPO / "docker-compose.yml"

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
DASHBOARD_UIDS = {"penguins-ml-api", "penguins-system"}
JOBS = {"penguins-api", "penguins-exporter", "node", "prometheus"}

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


def load_yaml(path: Path) -> dict:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text())


def scrape_configs() -> dict[str, dict]:
    """Return job name -> scrape config of prometheus.yml."""
    return {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}


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
