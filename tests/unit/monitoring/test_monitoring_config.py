"""The monitoring stack as data: prometheus.yml, the rules and the rule tests, parsed in process."""

from __future__ import annotations

import glob
import re

from tests.support.monitoring import (
    JOBS,
    PROMETHEUS_CONFIG,
    PUBLIC_ALERTS,
    PUBLIC_METRICS,
    REPO,
    RULE_TESTS_DIR,
    SYNTHETIC_METRICS,
    alert_rules,
    grouping_labels,
    instance_level,
    load_yaml,
    metric_names,
    panel_queries,
    prometheus_configs,
    recording_rules,
    rule_files,
    scrape_configs,
)

TARGETS = {
    "penguins-api": "host.docker.internal:5000",
    "penguins-exporter": "host.docker.internal:8000",
    "node": "node-exporter:9100",
    "prometheus": "localhost:9090",
}


# --- prometheus.yml ---------------------------------------------------------------------------


def test_scrape_jobs_and_targets():
    jobs = scrape_configs()
    assert set(jobs) == JOBS
    for name, target in TARGETS.items():
        targets = [t for static in jobs[name]["static_configs"] for t in static["targets"]]
        assert targets == [target], name


def test_rule_files_are_relative_and_resolve_from_the_repo_root():
    patterns = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert patterns
    found = set()
    for pattern in patterns:
        assert not pattern.startswith("/"), f"{pattern} must be relative to work in the container"
        found.update(glob.glob(str(REPO / pattern)))
    assert sorted(found) == sorted(map(str, rule_files()))


def test_rules_select_only_jobs_that_exist():
    selected = set()
    for rule in [*recording_rules().values(), *(a["expr"] for a in alert_rules().values())]:
        selected.update(re.findall(r'\bjob\s*=~?\s*"([^"]+)"', rule))
    assert selected, "no rule selects a job"
    assert selected <= set(scrape_configs())


def test_every_prometheus_config_keeps_the_jobs_the_alerts_watch():
    # The team configurations (prometheus/team*.yml) find the API replicas by service
    # discovery instead of a static target, under the same job names.
    watched = set()
    for rule in alert_rules().values():
        watched.update(re.findall(r'\bjob\s*=~?\s*"([^"]+)"', rule["expr"]))
    assert {"penguins-api", "penguins-exporter"} <= watched
    for path in prometheus_configs():
        assert watched <= set(scrape_configs(path)), path.name


# --- rules ------------------------------------------------------------------------------------


def test_recording_rules_are_named_level_metric_operation():
    for name in recording_rules():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), name


def test_rules_read_only_known_metrics():
    recorded = recording_rules()
    exprs = [*recorded.values(), *(rule["expr"] for rule in alert_rules().values())]
    for expr in exprs:
        for name in metric_names(expr):
            known = name in PUBLIC_METRICS | SYNTHETIC_METRICS or name in recorded
            assert known or name.startswith("node_"), f"{name} in {expr!r}"


def test_every_recording_rule_is_used():
    recorded = recording_rules()
    readers = [
        *(expr for name, expr in recorded.items()),
        *(rule["expr"] for rule in alert_rules().values()),
        *(expr for _, _, expr in panel_queries()),
    ]
    used = set().union(*(metric_names(expr) for expr in readers))
    assert set(recorded) - used == set()


def test_job_level_rules_aggregate_over_instances_and_instance_rules_keep_them():
    # Several API replicas are one line at the job level (quantiles sum the buckets
    # of all replicas first) and one line each at the instance level.
    per_instance = set()
    for name, expr in recording_rules().items():
        for labels in grouping_labels(expr):
            assert ("instance" in labels) == instance_level(name), f"{name}: by ({labels})"
        if instance_level(name) and grouping_labels(expr):
            per_instance.add(name)
    assert {
        "instance:ml_requests:rate5m",
        "instance:ml_request_errors:ratio_rate5m",
        "instance_le:ml_request_duration_seconds_bucket:rate5m",
        "instance_model_version:ml_model_info:max",
    } <= per_instance
    assert grouping_labels(
        recording_rules()["job_le:ml_request_duration_seconds_bucket:rate5m"]
    ) == [{"job", "le"}]


# A selector of the API's request metrics, with its labels if it has any.
REQUEST_SELECTOR = re.compile(
    r"(?<![\w:])(ml_requests_total|ml_request_duration_seconds_(?:bucket|count|sum))(?![\w:])"
    r"(\{[^}]*\})?"
)
SCRAPES_LEFT_OUT = 'endpoint!="/metrics"'


def test_job_level_request_rules_leave_scrapes_out_and_per_endpoint_rules_keep_them():
    # Request rate, statuses, error ratios and latency must all count the same traffic;
    # per endpoint, /metrics is a line of its own.
    checked = set()
    for name, expr in recording_rules().items():
        selectors = REQUEST_SELECTOR.findall(expr)
        if not selectors:
            continue
        checked.add(name)
        left_out = [SCRAPES_LEFT_OUT in labels for _, labels in selectors]
        if name.startswith("job_endpoint:"):
            assert not any(left_out), f"{name} hides /metrics from the per-endpoint panels"
        else:
            assert all(left_out), f"{name} counts Prometheus' scrapes of /metrics"
    assert {
        "job:ml_requests:rate5m",
        "job_status:ml_requests:rate5m",
        "job:ml_request_errors:ratio_rate5m",
        "job:ml_request_client_errors:ratio_rate5m",
        "job_le:ml_request_duration_seconds_bucket:rate5m",
        "job_endpoint:ml_requests:rate5m",
        "job_endpoint:ml_request_duration_seconds:p95_5m",
        "instance:ml_requests:rate5m",
        "instance:ml_request_errors:ratio_rate5m",
        "instance_le:ml_request_duration_seconds_bucket:rate5m",
    } <= checked


def test_contract_alerts_are_defined_completely():
    alerts = alert_rules()
    assert set(alerts) == PUBLIC_ALERTS
    for name, rule in alerts.items():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} has no `for`"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_every_alert_has_a_comment_explaining_its_threshold():
    for path in rule_files():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            match = re.match(r"\s*- alert: (\w+)", line)
            if match:
                previous = lines[number - 1].strip()
                assert previous.startswith("#"), f"{path.name}: {match[1]} has no comment above"


def rule_test_cases() -> dict[str, dict[str, int]]:
    """Count, per alert, the promtool test cases where it fires and where it stays silent."""
    counts = {name: {"fires": 0, "silent": 0} for name in alert_rules()}
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                outcome = "fires" if case.get("exp_alerts") else "silent"
                counts.setdefault(case["alertname"], {"fires": 0, "silent": 0})[outcome] += 1
    return counts


def test_every_alert_is_tested_firing_and_silent():
    counts = rule_test_cases()
    assert set(counts) == set(alert_rules()), "tests name an alert that does not exist"
    for name, count in counts.items():
        assert count["fires"] >= 1, f"{name} is never tested firing"
        assert count["silent"] >= 1, f"{name} is never tested silent"


def test_every_recording_rule_is_tested():
    tested = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for test in load_yaml(path)["tests"]:
            tested.update(case["expr"] for case in test.get("promql_expr_test", []))
    assert set(recording_rules()) - tested == set()


def test_metric_names_parser():
    expr = (
        "histogram_quantile(0.95, sum by (job, le) (rate(ml_request_duration_seconds_bucket"
        '{endpoint!="/metrics", job=~"a|b"}[5m]))) > 1e3 or on (job) '
        "count without (cpu) (node_cpu_seconds_total offset 5m) / job:ml_requests:rate5m "
        "or vector(0)"
    )
    assert metric_names(expr) == {
        "ml_request_duration_seconds_bucket",
        "node_cpu_seconds_total",
        "job:ml_requests:rate5m",
    }
