"""End to end: the real API, exporter, node exporter and Prometheus, with this repo's config.

Prometheus runs natively on a free port with prometheus.yml rewritten only where a
test must differ from docker-compose: targets on 127.0.0.1, 1s intervals, rule files
by absolute path. After traffic from inference.py, every target must be up, every
rule file loaded without errors, and every panel query of both dashboards must
return data: the dashboards, the rules and the metric names of the code agree. With
one API instance, the per-instance panels show it and the others show the job as one
line; the team tests run the same checks on several replicas.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from penguins.config import sqlite_uri
from tests.support import IN_CI, ManagedProcess, free_port, require_binary
from tests.support.monitoring import (
    JOBS,
    PROMETHEUS_CONFIG,
    REPO,
    instances_missing,
    panel_queries,
    queries_split_by_instance,
    query_prometheus,
    rule_files,
    unanswered_queries,
)

SCRIPTS = ("ml_serving.py", "prometheus_exporter.py", "inference.py")
# Traffic for every panel: predictions with feedback (live accuracy needs 20 labels),
# invalid requests (4xx), then drifted inputs (PSI needs 500 inputs; above 0.2 it puts
# MLFeatureDrift in pending, so ALERTS has a series).
TRAFFIC_RUNS = (
    ("--count", "200", "--feedback-share", "1.0"),
    ("--count", "40", "--invalid-share", "0.5"),
    ("--count", "200", "--drift"),
)
# Each process of the stack, the Prometheus job that scrapes it, and its readiness path.
JOB_OF = {"api": "penguins-api", "exporter": "penguins-exporter", "node-exporter": "node",
          "prometheus": "prometheus"}  # fmt: skip
READY = {"api": "/health", "exporter": "/metrics", "node-exporter": "/metrics",
         "prometheus": "/-/ready"}  # fmt: skip
# Long enough for the recording rules to see the traffic, short enough for the suite.
DATA_TIMEOUT = 60.0


def require_scripts() -> None:
    """Skip locally, fail under CI, while a script this test runs is not in the checkout."""
    missing = [name for name in SCRIPTS if not (REPO / name).is_file()]
    if missing:
        message = f"{', '.join(missing)} not in this checkout"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)


@dataclass(frozen=True)
class Stack:
    """Where the processes of one end-to-end run listen."""

    api: str
    exporter: str
    node: str
    prometheus: str

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Return the result vector of an instant query, now or at the Unix time ``at``."""
        return query_prometheus(self.prometheus, expr, at)

    def query_until(self, expr: str, done: Callable[[list[dict]], bool]) -> list[dict]:
        """Return the result of ``expr`` once ``done`` accepts it; fail after DATA_TIMEOUT."""
        deadline = time.monotonic() + DATA_TIMEOUT
        while True:
            result = self.query(expr)
            if done(result):
                return result
            assert time.monotonic() < deadline, f"{expr} never gave what the test needs: {result}"
            time.sleep(1)


def prometheus_config(targets: dict[str, str]) -> dict:
    """Return prometheus.yml with test targets, 1s intervals and absolute rule paths."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / p) for p in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


def run_traffic(stack: Stack, *args: str) -> None:
    """Run inference.py against the API and fail with its output if it fails."""
    cmd = [sys.executable, "inference.py", "--url", stack.api, "--rate", "0", "--seed", "7"]
    cmd += ["--no-progress", *args]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"


def stack_commands(ports: dict[str, int], config: str, tsdb: str) -> dict[str, list[str]]:
    """Return the command line of each process of the stack."""
    return {
        "api": [sys.executable, "ml_serving.py", "--host", "127.0.0.1",
                "--port", str(ports["penguins-api"]), "--workers", "2"],
        "exporter": [sys.executable, "prometheus_exporter.py", "--host", "127.0.0.1"],
        "node-exporter": [require_binary("prometheus-node-exporter"),
                          f"--web.listen-address=127.0.0.1:{ports['node']}"],
        "prometheus": [require_binary("prometheus"), f"--config.file={config}",
                       f"--storage.tsdb.path={tsdb}",
                       f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
    }  # fmt: skip


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Iterator[Stack]:
    """Start API, exporter, node exporter and Prometheus; stop them all afterwards."""
    require_binary("prometheus")
    require_binary("prometheus-node-exporter")
    require_scripts()
    trained_store = request.getfixturevalue("trained_store")  # only once nothing skips
    root = tmp_path_factory.mktemp("monitoring-e2e")
    ports = {job: free_port() for job in JOBS}
    env = {
        "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
        "PREDICTION_LOG_URI": sqlite_uri(root / "predictions.db"),
        "PROMETHEUS_PORT": str(ports["penguins-exporter"]),
        "FLASK_DEBUG": "0",
    }
    config = root / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(prometheus_config({job: f"127.0.0.1:{p}" for job, p in ports.items()}))
    )
    urls = {name: f"http://127.0.0.1:{ports[job]}" for name, job in JOB_OF.items()}
    procs: list[ManagedProcess] = []
    try:
        for name, argv in stack_commands(ports, str(config), str(root / "tsdb")).items():
            procs.append(ManagedProcess(argv, root / "logs" / f"{name}.log", env=env, name=name))
        for proc in procs:
            proc.wait_for_http(urls[proc.name] + READY[proc.name], timeout=90)
        yield Stack(
            api=urls["api"],
            exporter=urls["exporter"],
            node=urls["node-exporter"],
            prometheus=urls["prometheus"],
        )
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=15)


@pytest.fixture(scope="module")
def traffic(stack) -> Stack:
    """Send normal traffic with feedback, invalid requests, then drifted inputs."""
    for args in TRAFFIC_RUNS:
        run_traffic(stack, *args)
    return stack


def test_every_target_is_up(traffic):
    deadline = time.monotonic() + 30
    while True:
        resp = requests.get(f"{traffic.prometheus}/api/v1/targets", timeout=10)
        active = resp.json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in active}
        if set(health) == JOBS and all(h == "up" for h, _ in health.values()):
            break
        assert time.monotonic() < deadline, f"targets not all up: {health}"
        time.sleep(1)


def test_every_rule_file_is_loaded_and_evaluates(traffic):
    resp = requests.get(f"{traffic.prometheus}/api/v1/rules", timeout=10)
    groups = resp.json()["data"]["groups"]
    assert {g["file"] for g in groups} == {str(path) for path in rule_files()}
    broken = [
        (rule["name"], rule.get("lastError"))
        for group in groups
        for rule in group["rules"]
        if rule["health"] == "err"
    ]
    assert broken == []


def test_every_panel_query_returns_data(traffic, summary_line):
    queries = panel_queries()
    missing = unanswered_queries(traffic.prometheus, timeout=DATA_TIMEOUT)
    answered = len(queries) - len(missing)
    summary_line(f"monitoring e2e: {answered}/{len(queries)} panel queries returned data")
    detail = "\n".join(f"  {query}" for query in missing)
    assert not missing, f"{len(missing)} panel queries returned no data:\n{detail}"


def test_per_instance_panels_show_the_api_and_the_others_the_job(traffic):
    instance = traffic.api.removeprefix("http://")
    assert instances_missing(traffic.prometheus, {instance}, timeout=DATA_TIMEOUT) == []
    assert queries_split_by_instance(traffic.prometheus) == []


def test_replicas_up_reads_one_of_one(traffic):
    rows = traffic.query_until(panel_expr("Replicas up"), bool)
    assert [(row["metric"], float(row["value"][1])) for row in rows] == [
        ({"job": "penguins-api", "up": "1", "expected": "1"}, 1.0)
    ]


def test_api_alerts_stay_silent_while_the_api_answers(traffic):
    # MLApiDown's absent() branch and MLApiReplicaDown's "some up" must not catch a
    # single target that answers.
    assert traffic.query('ALERTS{alertname=~"MLApiDown|MLApiReplicaDown"}') == []


def panel_expr(title: str) -> str:
    """Return the one query of the panel with this title."""
    (expr,) = [e for _, t, e in panel_queries() if t == title]
    return expr


def mountpoint_of(path: Path) -> str:
    """Return where the file system holding ``path`` is mounted."""
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


def test_the_alerts_table_says_none_fire_when_none_do(traffic):
    # An hour before the stack started, no alert existed: what the table shows then.
    before = time.time() - 3600
    assert traffic.query("ALERTS", at=before) == []
    rows = traffic.query(panel_expr("Alerts firing or pending"), at=before)
    assert [row["metric"] for row in rows] == [{"alertname": "none firing or pending"}]


def test_p95_by_endpoint_shows_only_routes_with_requests(traffic):
    rates = traffic.query_until(
        'job_endpoint:ml_requests:rate5m{job="penguins-api"}',
        lambda result: any(float(r["value"][1]) > 0 for r in result),
    )
    idle = {r["metric"]["endpoint"] for r in rates if float(r["value"][1]) == 0}
    assert idle, "every route had traffic: nothing shows that idle routes are left out"
    p95 = traffic.query_until(panel_expr("p95 latency by endpoint"), bool)
    values = {r["metric"]["endpoint"]: float(r["value"][1]) for r in p95}
    assert all(math.isfinite(v) for v in values.values()), values
    assert idle.isdisjoint(values), (idle, values)


def test_species_shares_of_the_last_hour_add_up_to_one(traffic):
    shares = traffic.query_until(panel_expr("Species, last hour"), bool)
    values = [float(r["value"][1]) for r in shares]
    assert all(0 <= v <= 1 for v in values), shares
    assert sum(values) == pytest.approx(1.0, abs=1e-9), shares


def test_exporter_and_node_exporter_agree_on_disk_use(traffic):
    # The exporter watches the project directory's file system (its default --disk-path).
    mountpoint = mountpoint_of(REPO)
    node_expr = (
        f'100 * instance_mountpoint:node_filesystem_usage:ratio{{job="node", '
        f'mountpoint="{mountpoint}"}}'
    )
    reported = {r["metric"]["mountpoint"] for r in traffic.query(
        'node_filesystem_size_bytes{job="node"}')}  # fmt: skip
    if mountpoint not in reported:
        pytest.skip(f"node exporter does not report {mountpoint} (its type is excluded by default)")
    exporter = traffic.query_until('system_disk_usage_percent{job="penguins-exporter"}', bool)
    node = traffic.query_until(node_expr, bool)
    assert len(exporter) == 1 and len(node) >= 1, (exporter, node)
    ours = float(exporter[0]["value"][1])
    for series in node:
        # psutil rounds to 0.1; files written between the two scrapes move it a little.
        assert float(series["value"][1]) == pytest.approx(ours, abs=0.5), (series, ours)
