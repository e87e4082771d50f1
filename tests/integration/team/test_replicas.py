"""The team deployment across hosts: replicas behind nginx on one log, one tracking server.

Two API replicas run on hosts of their own (network namespaces, tests/support/netns.py),
each ``python ml_serving.py`` with two workers, reaching the shared services at its
gateway: the session's PostgreSQL cluster (one prediction log for both) and its MLflow
tracking server (trained into over HTTP). In the test's own namespace run what a team
runs beside them: nginx with the repository's config in front of the replicas, one
exporter on the shared log, node exporter, and Prometheus with the team's file-based
discovery config, its targets written as a deployment tool would.

The tests run in the order of the file: what they take away (the database, the
tracking server, a replica) comes back before the next one starts, but the last one
stops a replica for good.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import IN_CI, ManagedProcess, free_port, require_binary
from tests.support.mlflow_server import ServedStore, train_over_http
from tests.support.monitoring import (
    REPO,
    instances_missing,
    queries_split_by_instance,
    unanswered_queries,
)
from tests.support.netns import Host, make_hosts
from tests.support.nginx import Balancer
from tests.support.postgres import PostgresCluster
from tests.support.predlog import logged_ids
from tests.support.samples import SAMPLE
from tests.support.stores import store_client

TEAM_CONFIG = REPO / "prometheus" / "team-file-sd.yml"
REPLICAS = 2
JSON = {"Content-Type": "application/json"}


@dataclass
class Replica:
    """One API replica: the host it runs on, its URL there, and its process."""

    host: Host
    port: int
    env: dict[str, str]
    log_dir: Path
    process: ManagedProcess | None = None

    @property
    def instance(self) -> str:
        """Return the replica's ``instance`` label in Prometheus: its address and port."""
        return f"{self.host.address}:{self.port}"

    @property
    def url(self) -> str:
        """Return the replica's base URL, as the balancer and Prometheus reach it."""
        return f"http://{self.instance}"

    def start(self) -> Replica:
        """Start ``python ml_serving.py`` on the replica's host and wait until it is healthy."""
        listen = "0.0.0.0" if self.host.wrap else self.host.address
        argv = self.host.command(
            sys.executable, "ml_serving.py", "--host", listen, "--port", str(self.port),
            "--workers", "2",
        )  # fmt: skip
        self.process = ManagedProcess(
            argv, self.log_dir / f"{self.host.name}.log", env=self.env, name=self.host.name
        )
        self.process.wait_for_http(f"{self.url}/health", timeout=120)
        return self

    def stop(self) -> int:
        """Stop the replica gracefully (SIGTERM); return its exit code."""
        assert self.process is not None
        return self.process.stop(timeout=30)


@dataclass
class Team:
    """Everything one module of tests runs, and how to reach it."""

    postgres: PostgresCluster
    store: ServedStore
    log_uri: str
    replicas: list[Replica]
    balancer: Balancer
    exporter: str
    prometheus: str
    answered: list[str] = field(default_factory=list)  # every prediction id answered

    def predict(self, url: str | None = None, sample: dict | None = None) -> requests.Response:
        """POST one sample to ``url`` (the balancer by default); remember an answered id."""
        resp = requests.post(
            f"{url or self.balancer.url}/predict", json=sample or SAMPLE, timeout=30
        )
        if resp.status_code == 200:
            self.answered.append(resp.json()["prediction_id"])
        return resp

    def batch(self, url: str, samples: list[dict]) -> list[dict]:
        """POST a batch to ``url``; return its predictions, remembering their ids."""
        resp = requests.post(f"{url}/predict/batch", json={"samples": samples}, timeout=60)
        assert resp.status_code == 200, resp.text
        predictions = resp.json()["predictions"]
        self.answered.extend(p["prediction_id"] for p in predictions)
        return predictions


def prometheus_config(folder: Path) -> Path:
    """Write the team's file-discovery config, made fast for a test, into ``folder``."""
    config = yaml.safe_load(TEAM_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(TEAM_CONFIG.parent / path) for path in config["rule_files"]]
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", []):
            discovery["files"] = [str(folder / path) for path in discovery["files"]]
            discovery["refresh_interval"] = "1s"
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_targets(folder: Path, job: str, targets: list[str]) -> None:
    """Write the discovery file of ``job``, as a deployment tool adds hosts."""
    (folder / "targets" / job).mkdir(parents=True, exist_ok=True)
    (folder / "targets" / job / "team.json").write_text(json.dumps([{"targets": targets}]))


def metric_sum(url: str, name: str) -> float:
    """Return the sum of every sample of counter ``name`` on a server's /metrics."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{name}_total" or sample.name == name
    )


def exporter_value(url: str, name: str) -> list[float]:
    """Return the values of gauge ``name`` on the exporter's /metrics."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def until(what: str, check, timeout: float = 60.0, interval: float = 0.5):
    """Return ``check()`` once it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s (last: {value!r})"
        time.sleep(interval)


@pytest.fixture(scope="module")
def team(request, tmp_path_factory, summary_line) -> Iterator[Team]:
    """Start the replicas on their hosts, nginx, the exporter, node exporter and Prometheus."""
    binaries = {name: require_binary(name) for name in ("prometheus", "prometheus-node-exporter")}
    require_binary("nginx")
    postgres: PostgresCluster = request.getfixturevalue("postgres")
    store: ServedStore = request.getfixturevalue("served_tracking_store")
    root = tmp_path_factory.mktemp("team")
    log_db = "team_log"
    postgres.create_database(log_db)
    started: list[ManagedProcess] = []
    with make_hosts(REPLICAS, allow_fallback=not IN_CI) as (hosts, description):
        summary_line(f"team deployment: {description}")
        replicas = [
            Replica(
                host,
                free_port(),
                {
                    "MLFLOW_TRACKING_URI": store.server.url_at(host.gateway),
                    "PREDICTION_LOG_URI": postgres.uri(log_db, host=host.gateway),
                    "MODEL_REFRESH_SECONDS": "1",
                    "FLASK_DEBUG": "0",
                },
                root / "logs",
            )
            for host in hosts
        ]
        balancer: Balancer | None = None
        try:
            for replica in replicas:
                replica.start()
            balancer = Balancer(root / "nginx", [r.instance for r in replicas])
            balancer.wait_ready()
            ports = {name: free_port() for name in ("exporter", "node", "prometheus")}
            exporter = ManagedProcess.python(
                "prometheus_exporter.py", "--host", "127.0.0.1", "--port", str(ports["exporter"]),
                "--accuracy-window", "60", "--drift-window", "600", "--drift-min-samples", "600",
                log_path=root / "logs" / "exporter.log",
                env={"MLFLOW_TRACKING_URI": store.tracking_uri,
                     "PREDICTION_LOG_URI": postgres.uri(log_db), "MODEL_REFRESH_SECONDS": "1"},
                name="exporter",
            )  # fmt: skip
            started.append(exporter)
            node = ManagedProcess(
                [binaries["prometheus-node-exporter"],
                 f"--web.listen-address=127.0.0.1:{ports['node']}"],
                root / "logs" / "node-exporter.log", name="node-exporter",
            )  # fmt: skip
            started.append(node)
            prom_dir = root / "prometheus"
            prom_dir.mkdir()
            write_targets(prom_dir, "penguins-api", [r.instance for r in replicas])
            write_targets(prom_dir, "penguins-exporter", [f"127.0.0.1:{ports['exporter']}"])
            write_targets(prom_dir, "node", [f"127.0.0.1:{ports['node']}"])
            prometheus = ManagedProcess(
                [binaries["prometheus"], f"--config.file={prometheus_config(prom_dir)}",
                 f"--storage.tsdb.path={prom_dir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
                root / "logs" / "prometheus.log", name="prometheus",
            )  # fmt: skip
            started.append(prometheus)
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            exporter.wait_for_http(f"{urls['exporter']}/metrics")
            prometheus.wait_for_http(f"{urls['prometheus']}/-/ready")
            yield Team(
                postgres, store, postgres.uri(log_db), replicas, balancer,
                urls["exporter"], urls["prometheus"],
            )  # fmt: skip
        finally:
            for proc in reversed(started):
                proc.stop(timeout=15)
            if balancer is not None:
                balancer.stop()
            for replica in replicas:
                if replica.process is not None:
                    replica.process.stop(timeout=15)
            if not postgres.running:
                postgres.start()
            shutil.rmtree(root / "prometheus" / "tsdb", ignore_errors=True)


def test_predictions_through_the_balancer_land_on_both_replicas_and_in_the_log(team):
    before = [metric_sum(r.url, "ml_predictions") for r in team.replicas]
    with requests.Session() as session:
        for _ in range(40):
            resp = session.post(f"{team.balancer.url}/predict", json=SAMPLE, timeout=30)
            assert resp.status_code == 200, resp.text
            team.answered.append(resp.json()["prediction_id"])
    team.batch(team.balancer.url, [SAMPLE] * 50)
    after = [metric_sum(r.url, "ml_predictions") for r in team.replicas]
    served = [b - a for a, b in zip(before, after, strict=True)]
    assert all(n >= 10 for n in served), f"predictions per replica: {served}"
    assert sum(served) == 90
    assert set(team.answered) <= set(logged_ids(team.log_uri))


def test_feedback_for_a_prediction_of_one_replica_is_taken_by_the_other_at_once(team):
    first, second = team.replicas
    prediction = team.predict(first.url).json()
    resp = requests.post(
        f"{second.url}/feedback",
        json={"prediction_id": prediction["prediction_id"], "actual_species": "Gentoo"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["correct"] is (prediction["predicted_species"] == "Gentoo")
    # And back: a correction arrives on the first replica.
    species = prediction["predicted_species"]
    resp = requests.post(
        f"{first.url}/feedback",
        json={"prediction_id": prediction["prediction_id"], "actual_species": species},
        timeout=10,
    )
    assert resp.json() == {"prediction_id": prediction["prediction_id"], "correct": True}


def _labelled(team: Team, replica: Replica, count: int, right: bool) -> None:
    """Predict ``count`` samples on ``replica`` and label each rightly or wrongly."""
    others = {"Adelie": "Gentoo", "Gentoo": "Chinstrap", "Chinstrap": "Adelie"}
    for prediction in team.batch(replica.url, [SAMPLE] * count):
        species = prediction["predicted_species"]
        resp = requests.post(
            f"{replica.url}/feedback",
            json={"prediction_id": prediction["prediction_id"],
                  "actual_species": species if right else others[species]},
            timeout=10,
        )  # fmt: skip
        assert resp.status_code == 200, resp.text


def test_live_accuracy_and_drift_cover_both_replicas(team):
    # The exporter's accuracy window is 60 labels: 30 right ones labelled on one
    # replica and 30 wrong ones on the other make 0.5 only if it sees both.
    _labelled(team, team.replicas[0], 30, right=True)
    _labelled(team, team.replicas[1], 30, right=False)
    until("live accuracy 0.5", lambda: exporter_value(team.exporter, "ml_model_live_accuracy")
          == [pytest.approx(0.5)], timeout=30)  # fmt: skip
    # Drift: the newest 600 inputs, 300 drifted ones from each replica.
    drifted = {**SAMPLE, "body_mass_g": SAMPLE["body_mass_g"] + 1500.0,
               "flipper_length_mm": SAMPLE["flipper_length_mm"] + 25.0}  # fmt: skip
    for replica in team.replicas:
        team.batch(replica.url, [drifted] * 300)
    until("drift detected", lambda: exporter_value(team.exporter, "ml_drift_detected") == [1.0],
          timeout=30)  # fmt: skip


@contextlib.contextmanager
def steady_traffic(team: Team, interval: float = 0.2) -> Iterator[None]:
    """Send each replica a prediction every ``interval`` seconds, and an invalid one now and
    then, for the length of the block: rates over the last minutes stay above zero."""
    stop = threading.Event()

    def send() -> None:
        rounds = 0
        while not stop.wait(interval):
            for replica in team.replicas:
                team.predict(replica.url)
                if rounds % 10 == 0:
                    requests.post(f"{replica.url}/predict", json={"bill_length_mm": -1}, timeout=10)
            rounds += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def test_every_panel_query_returns_data_with_two_instances(team, summary_line):
    with steady_traffic(team):
        missing = unanswered_queries(team.prometheus, timeout=90)
        absent = instances_missing(team.prometheus, [r.instance for r in team.replicas])
        split = queries_split_by_instance(team.prometheus)
    summary_line(f"team deployment: {len(missing)} panel queries without data over 2 replicas")
    assert missing == []
    assert absent == []
    assert split == []


def every_replica_serves(team: Team, version: str) -> None:
    """Wait until every replica's /model/info names ``version``; fail naming the one that lags."""
    for replica in team.replicas:
        until(
            f"{replica.host.name} serving version {version}",
            lambda r=replica: requests.get(f"{r.url}/model/info", timeout=10).json()
            .get("version") == version,
        )  # fmt: skip


def test_a_champion_move_reaches_every_replica(team, tmp_path):
    client = store_client(team.store.tracking_uri)
    current = client.get_model_version_by_alias(team.store.model_name, team.store.alias)
    # What a user does: train again and move the alias whatever the scores say.
    train_over_http(team.store.server, tmp_path, extra=["--force"])
    moved = client.get_model_version_by_alias(team.store.model_name, team.store.alias)
    assert moved.version != current.version
    try:
        every_replica_serves(team, moved.version)
        assert team.predict().json()["model_version"] == moved.version
    finally:
        # Other tests of the session read the store's champion as it was.
        client.set_registered_model_alias(team.store.model_name, team.store.alias, current.version)
    every_replica_serves(team, current.version)


def test_the_database_stopped_gives_503_then_200_by_itself_never_500(team):
    statuses: Counter[int] = Counter()
    team.postgres.stop()
    try:
        for _ in range(10):
            resp = team.predict()
            statuses[resp.status_code] += 1
            if resp.status_code == 503:
                assert resp.headers.get("Retry-After"), resp.headers
                assert "error" in resp.json()
        for replica in team.replicas:
            health = requests.get(f"{replica.url}/health", timeout=10)
            assert health.status_code == 503, health.text
            assert "penguins-secret" not in health.text
    finally:
        team.postgres.start()
    assert statuses == {503: 10}, statuses

    def answered() -> bool:
        status = team.predict().status_code
        statuses[status] += 1
        return status == 200

    until("a prediction answered after the database came back", answered, timeout=60)
    for replica in team.replicas:
        until(f"{replica.host.name} healthy", lambda r=replica: requests.get(
            f"{r.url}/health", timeout=10).status_code == 200)  # fmt: skip
    assert 500 not in statuses, statuses


def test_the_tracking_server_stopped_leaves_serving_untouched(team):
    with team.store.server.stopped():
        time.sleep(3)  # several refreshes of every worker find the server gone
        for _ in range(20):
            resp = team.predict()
            assert resp.status_code == 200, resp.text
        for replica in team.replicas:
            health = requests.get(f"{replica.url}/health", timeout=10)
            assert health.status_code == 200, health.text
    assert team.predict().status_code == 200


def test_stopping_a_replica_under_load_loses_nothing_it_answered(team, summary_line):
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                resp = session.post(f"{team.balancer.url}/predict", json=SAMPLE, timeout=30)
                with lock:
                    statuses[resp.status_code] += 1
                    if resp.status_code == 200:
                        team.answered.append(resp.json()["prediction_id"])

    stopped = team.replicas[0]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load) for _ in range(4)]
        time.sleep(2)
        code = stopped.stop()
        time.sleep(3)
        stop.set()
        for future in futures:
            future.result()
    summary_line(f"team deployment: one replica stopped under load: {dict(statuses)}")
    assert code == 0, stopped.process.output() if stopped.process else ""
    assert set(statuses) == {200}, statuses
    # Routed around: every request after the stop went to the other replica.
    survivor = team.replicas[1]
    before = metric_sum(survivor.url, "ml_predictions")
    for _ in range(10):
        assert team.predict().status_code == 200
    assert metric_sum(survivor.url, "ml_predictions") == before + 10
    assert set(team.answered) <= set(logged_ids(team.log_uri))
