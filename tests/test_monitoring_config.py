"""The monitoring stack as code: prometheus.yml, rules and their tests, docker-compose, Grafana."""

from __future__ import annotations

import glob
import os
import posixpath
import re
import subprocess

import pytest
import yaml

from tests.monitoring_files import (
    COMPOSE_FILE,
    CONTRACT_ALERTS,
    CONTRACT_METRICS,
    JOBS,
    PROMETHEUS_CONFIG,
    PROVISIONING_DIR,
    REPO,
    RULE_TESTS_DIR,
    SYNTHETIC_METRICS,
    alert_rules,
    load_yaml,
    metric_names,
    panel_queries,
    recording_rules,
    rule_files,
)
from tests.support import require_binary

TARGETS = {
    "penguins-api": "host.docker.internal:5000",
    "penguins-exporter": "host.docker.internal:8000",
    "node": "node-exporter:9100",
    "prometheus": "localhost:9090",
}


def run(*cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command in the repository root and return it, stdout and stderr captured."""
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def scrape_configs() -> dict[str, dict]:
    """Return job name -> scrape config of prometheus.yml."""
    return {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_accepts_config_and_finds_every_rule_file():
    promtool = require_binary("promtool")
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rule_files())} rule files found" in result.stdout + result.stderr


def test_promtool_accepts_rules():
    promtool = require_binary("promtool")
    result = run(promtool, "check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    promtool = require_binary("promtool")
    tests = sorted(map(str, RULE_TESTS_DIR.glob("*.yml")))
    assert tests, "no promtool rule tests in prometheus/tests/"
    result = run(promtool, "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


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


# --- rules ------------------------------------------------------------------------------------


def test_recording_rules_are_named_level_metric_operation():
    for name in recording_rules():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), name


def test_rules_read_only_known_metrics():
    recorded = recording_rules()
    exprs = [*recorded.values(), *(rule["expr"] for rule in alert_rules().values())]
    for expr in exprs:
        for name in metric_names(expr):
            known = name in CONTRACT_METRICS | SYNTHETIC_METRICS or name in recorded
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


def test_contract_alerts_are_defined_completely():
    alerts = alert_rules()
    assert set(alerts) == CONTRACT_ALERTS
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


# --- docker-compose ---------------------------------------------------------------------------


def compose_config(**env: str) -> dict:
    """Return docker-compose's resolved configuration, with GF_* taken only from ``env``."""
    binary = require_binary("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GF_")}
    result = run(binary, "-f", str(COMPOSE_FILE), "config", env={**clean, **env})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def volume_targets(service: dict) -> dict[str, str]:
    """Return container path -> source (host path or named volume) of a service."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    """Return the resolved docker-compose configuration with no GF_* overrides."""
    return compose_config()


def test_compose_services_ports_images_and_restart(compose):
    services = compose["services"]
    expected_ports = {"prometheus": 9090, "grafana": 3000, "node-exporter": 9100}
    assert set(expected_ports) <= set(services)
    for name, port in expected_ports.items():
        service = services[name]
        assert {(p["published"], p["target"]) for p in service["ports"]} == {(port, port)}
        image, _, tag = service["image"].rpartition(":")
        assert image and re.search(r"\d+\.\d+", tag) and tag != "latest", service["image"]
        assert service.get("restart") in ("always", "unless-stopped"), name


def test_compose_keeps_data_in_named_volumes(compose):
    named = set(compose.get("volumes", {}))
    assert volume_targets(compose["services"]["prometheus"])["/prometheus"] in named
    assert volume_targets(compose["services"]["grafana"])["/var/lib/grafana"] in named


def test_prometheus_reaches_the_host_and_loads_the_repo_rules(compose):
    service = compose["services"]["prometheus"]
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]
    mounts = volume_targets(service)
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert mounts[config_path] == str(PROMETHEUS_CONFIG)
    # Each relative rule_files pattern, resolved next to the config in the container, must
    # land in a mount of the repository directory that holds the same files.
    for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        container_dir = posixpath.dirname(posixpath.join(posixpath.dirname(config_path), pattern))
        assert mounts.get(container_dir) == str(REPO / posixpath.dirname(pattern)), pattern


def test_grafana_admin_defaults_and_overrides():
    defaults = compose_config()["services"]["grafana"]["environment"]
    assert defaults["GF_SECURITY_ADMIN_USER"] == "admin"
    assert defaults["GF_SECURITY_ADMIN_PASSWORD"] == "admin"
    custom = compose_config(GF_SECURITY_ADMIN_USER="ops", GF_SECURITY_ADMIN_PASSWORD="s3cret")
    environment = custom["services"]["grafana"]["environment"]
    assert environment["GF_SECURITY_ADMIN_USER"] == "ops"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"


def test_grafana_mounts_match_provisioning(compose):
    mounts = volume_targets(compose["services"]["grafana"])
    assert mounts["/etc/grafana/provisioning"] == str(PROVISIONING_DIR)
    provider = load_yaml(PROVISIONING_DIR / "dashboards" / "dashboards.yml")["providers"]
    assert len(provider) == 1 and provider[0]["type"] == "file"
    assert mounts[provider[0]["options"]["path"]] == str(REPO / "grafana" / "dashboards")
    environment = compose["services"]["grafana"]["environment"]
    home = environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    dashboards_dir, name = posixpath.split(home)
    assert (REPO / mounts[dashboards_dir] / name).is_file()


def test_grafana_datasource_points_at_the_compose_prometheus(compose):
    sources = load_yaml(PROVISIONING_DIR / "datasources" / "prometheus.yml")["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    assert (
        source["jsonData"]["timeInterval"]
        == load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    )
