"""nginx with the repository's config in front of real API replicas, and Prometheus finding them.

The replicas are ``python ml_serving.py`` started with the compose ``api`` service's
own command (tests/support/compose.py), each on a loopback port with a prediction log
of its own, all serving the session's trained store. nginx runs natively with
``deploy/nginx/penguins.conf`` (tests/support/nginx.py). Checked: the client's Host and
address reach the upstream over a kept-alive HTTP/1.1 connection (shown by a small echo
server standing in for a replica); requests spread over the replicas; a full batch
passes and a body over the API's limit gets the API's own 413; nginx's own errors are
JSON; a replica answering 503 or stopping costs the client nothing; Prometheus with
``prometheus/team-file-sd.yml`` scrapes every replica.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from penguins.config import from_env, sqlite_uri
from penguins.serving.settings import ServingSettings
from tests.support import ManagedProcess, free_port, require_binary
from tests.support.compose import native_argv
from tests.support.monitoring import REPO
from tests.support.nginx import SITE_CONFIG, balancing
from tests.support.samples import SAMPLE

# A model URI no store holds: that replica answers 503 on /predict and /health.
MISSING_MODEL = "models:/no-such-model@champion"
FILE_SD_CONFIG = REPO / "prometheus" / "team-file-sd.yml"


class Replica:
    """One API replica: the compose api command, on a free port of 127.0.0.1."""

    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        """Start it; its output goes to ``root/NAME.log``."""
        port = free_port()
        self.name = name
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"
        argv = native_argv("api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        self.process = ManagedProcess(argv, root / f"{name}.log", env=env, name=name)

    def wait_ready(self, ok: tuple[int, ...]) -> None:
        """Wait until /health answers one of ``ok``."""
        self.process.wait_for_http(f"{self.url}/health", ok=ok, timeout=120)

    def answered(self, status: int, endpoint: str = "/predict") -> float:
        """Return how many POST ``endpoint`` requests this replica answered with ``status``."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        wanted = {"method": "POST", "endpoint": endpoint, "status": str(status)}
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "ml_requests_total" and sample.labels == wanted
        )


@pytest.fixture(scope="module")
def replicas(trained_store, tmp_path_factory) -> Iterator[dict[str, Replica]]:
    """Start four replicas at once: ``a`` and ``b``, ``doomed`` (to stop), ``no-model``."""
    root = tmp_path_factory.mktemp("replicas")
    extra = {"a": {}, "b": {}, "doomed": {}, "no-model": {"MODEL_URI": MISSING_MODEL}}
    started: dict[str, Replica] = {}
    try:
        for name, env in extra.items():
            base = {
                "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
                "PREDICTION_LOG_URI": sqlite_uri(root / f"{name}.db"),
            }
            started[name] = Replica(root, name, {**base, **env})
        for name, replica in started.items():
            replica.wait_ready(ok=(503,) if name == "no-model" else (200,))
        yield started
    finally:
        for replica in started.values():  # all stop gracefully at once, then each is waited for
            replica.process.send()
        for replica in started.values():
            replica.process.stop()


def predict(session: requests.Session, url: str) -> requests.Response:
    """POST one sample to ``url``/predict."""
    return session.post(f"{url}/predict", json=SAMPLE, timeout=30)


def raw_request(port: int, data: bytes) -> tuple[int, dict]:
    """Send raw bytes to 127.0.0.1:``port``; return the answer's status and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer
    return int(head.split()[1]), json.loads(body)


def nginx_body_limit() -> int:
    """Return client_max_body_size of the repository's nginx config, in bytes."""
    found = re.search(r"client_max_body_size\s+(\d+)([km]?);", SITE_CONFIG.read_text())
    number, unit = found.groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def body_of_size(size: int) -> bytes:
    """Return a valid batch body padded with spaces to exactly ``size`` bytes."""
    start = b'{"samples": [' + json.dumps(SAMPLE).encode()
    return start + b" " * (size - len(start) - 2) + b"]}"


class EchoHandler(BaseHTTPRequestHandler):
    """Answer each request with what the upstream saw of it: headers, HTTP version, peer."""

    protocol_version = "HTTP/1.1"  # keeps connections open, as gunicorn does

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        """Answer JSON describing the request."""
        body = json.dumps(
            {
                "host": self.headers["Host"],
                "forwarded_for": self.headers["X-Forwarded-For"],
                "version": self.request_version,
                "peer_port": self.client_address[1],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the test's output quiet."""


@contextlib.contextmanager
def echo_upstream() -> Iterator[str]:
    """Run an :class:`EchoHandler` server on a free loopback port; yield its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_upstreams_see_the_client_over_a_kept_alive_connection(tmp_path):
    """Host and X-Forwarded-For reach the replica, over one HTTP/1.1 connection reused."""
    headers = {"Host": "penguins.example", "X-Forwarded-For": "203.0.113.7"}
    with (
        echo_upstream() as address,
        balancing(tmp_path, [address]) as nginx,
        requests.Session() as session,
    ):
        seen = [session.get(f"{nginx.url}/", headers=headers, timeout=10).json() for _ in range(5)]
    assert {s["host"] for s in seen} == {"penguins.example"}
    assert {s["forwarded_for"] for s in seen} == {"203.0.113.7, 127.0.0.1"}
    assert {s["version"] for s in seen} == {"HTTP/1.1"}
    assert len({s["peer_port"] for s in seen}) == 1, "a new upstream connection per request"


def test_requests_spread_over_the_replicas(replicas, tmp_path):
    a, b = replicas["a"], replicas["b"]
    before = {r.name: r.answered(200) for r in (a, b)}
    with balancing(tmp_path, [a.address, b.address]) as nginx, requests.Session() as session:
        answers = [predict(session, nginx.url) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20, answers[0].text
    assert all(r.json()["predicted_species"] == "Adelie" for r in answers)
    served = {r.name: r.answered(200) - before[r.name] for r in (a, b)}
    # Sequential requests tie on connections in flight: least_conn then goes round robin.
    assert sum(served.values()) == 20 and min(served.values()) >= 5, served
    tried = re.findall(r"upstream=(\S+) ustatus=200 ", nginx.access_log())
    assert set(tried) == {a.address, b.address}


def test_a_full_batch_passes_and_a_body_over_the_apis_limit_gets_its_413(replicas, tmp_path):
    api_limit = from_env(ServingSettings, environ={}).body_limit
    assert nginx_body_limit() > api_limit  # else nginx, not the API, would refuse it
    headers = {"Content-Type": "application/json"}
    with balancing(tmp_path, [replicas["a"].address]) as nginx, requests.Session() as session:
        started = time.monotonic()
        full = session.post(
            f"{nginx.url}/predict/batch", json={"samples": [SAMPLE] * 10_000}, timeout=60
        )
        elapsed = time.monotonic() - started
        over_api = session.post(
            f"{nginx.url}/predict/batch", data=body_of_size(api_limit + 1), headers=headers,
            timeout=60,
        )  # fmt: skip
        over_nginx = session.post(
            f"{nginx.url}/predict/batch", data=body_of_size(nginx_body_limit() + 1),
            headers=headers, timeout=60,
        )  # fmt: skip
    assert full.status_code == 200, full.text[:500]
    assert full.json()["count"] == 10_000
    assert elapsed < 10, elapsed
    assert over_api.status_code == 413
    assert over_api.json() == {"error": f"body is larger than the limit of {api_limit} bytes"}
    assert over_nginx.status_code == 413
    assert "load balancer" in over_nginx.json()["error"]


def test_nginx_answers_its_own_errors_in_json(replicas, tmp_path):
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with balancing(tmp_path / "dead", dead) as nginx:
        answer = requests.post(f"{nginx.url}/predict", json=SAMPLE, timeout=30)
        assert answer.status_code == 503
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["Retry-After"] == "5"
        assert "no API replica" in answer.json()["error"]
    with balancing(tmp_path / "live", [replicas["a"].address]) as nginx:
        status, body = raw_request(nginx.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert status == 400 and "error" in body
        long_header = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"x" * 20_000 + b"\r\n\r\n"
        status, body = raw_request(nginx.port, long_header)
        assert status == 400 and body == {"error": "request headers too large"}
        # The API's own errors pass through as it wrote them.
        unknown = requests.get(f"{nginx.url}/predcit", timeout=30)
        assert unknown.status_code == 404
        assert unknown.json()["error"].startswith("no route /predcit; the routes are")


def test_a_replica_answering_503_is_retried_on_another(replicas, tmp_path):
    broken, a = replicas["no-model"], replicas["a"]
    refused = broken.answered(503)
    with balancing(tmp_path / "two", [broken.address, a.address]) as nginx:
        with requests.Session() as session:
            answers = [predict(session, nginx.url) for _ in range(10)]
        log = nginx.access_log()
    assert [r.status_code for r in answers] == [200] * 10
    assert broken.answered(503) > refused  # it was asked, and said no
    assert f"upstream={broken.address}, {a.address} ustatus=503, 200 " in log
    # Alone, its 503 reaches the client as the API wrote it.
    with balancing(tmp_path / "alone", [broken.address]) as nginx:
        alone = requests.post(f"{nginx.url}/predict", json=SAMPLE, timeout=30)
    assert alone.status_code == 503
    assert alone.json()["error"].startswith("no model loaded")


def test_a_replica_stopping_costs_no_request(replicas, tmp_path):
    a, doomed = replicas["a"], replicas["doomed"]
    statuses: list[int | str] = []
    stop = threading.Event()

    def send(url: str) -> None:
        """Predict in a loop until told to stop, noting every status or failure."""
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    statuses.append(predict(session, url).status_code)
                except requests.RequestException as exc:
                    statuses.append(repr(exc))

    with balancing(tmp_path, [a.address, doomed.address]) as nginx:
        senders = [threading.Thread(target=send, args=(nginx.url,)) for _ in range(3)]
        for sender in senders:
            sender.start()
        try:
            deadline = time.monotonic() + 30
            while doomed.answered(200) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert doomed.answered(200) >= 5, "the replica to stop got no traffic"
            doomed.process.stop()  # SIGTERM: graceful, as `docker stop` sends it
            at_stop = len(statuses)
            time.sleep(1.5)
        finally:
            stop.set()
            for sender in senders:
                sender.join(30)
    assert len(statuses) - at_stop >= 10, "too few requests after the stop to tell"
    failed = [s for s in statuses if s != 200]
    assert not failed, f"{len(failed)} of {len(statuses)} failed: {failed[:5]}"


def test_prometheus_finds_every_replica_through_file_sd(replicas, tmp_path):
    """The native team config: a targets file per job, read by real Prometheus."""
    binary = require_binary("prometheus")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    config = yaml.safe_load(FILE_SD_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    (folder / FILE_SD_CONFIG.name).write_text(yaml.safe_dump(config))
    (folder / "rules").symlink_to(REPO / "prometheus" / "rules")
    # The path of the API's targets files is the config's own, as a host would write it.
    api_job = next(job for job in config["scrape_configs"] if job["job_name"] == "penguins-api")
    pattern = Path(api_job["file_sd_configs"][0]["files"][0])
    targets = folder / pattern.parent / pattern.name.replace("*", "replicas")
    targets.parent.mkdir(parents=True)
    addresses = [replicas["a"].address, replicas["b"].address]
    targets.write_text(json.dumps([{"targets": addresses, "labels": {"host": "test"}}]))
    port = free_port()
    argv = [
        binary,
        f"--config.file={folder / FILE_SD_CONFIG.name}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with ManagedProcess(argv, tmp_path / "prometheus.log", name="prometheus") as prometheus:
        url = f"http://127.0.0.1:{port}"
        prometheus.wait_for_http(f"{url}/-/ready", timeout=60)
        deadline = time.monotonic() + 30
        while (up := _up_targets(url, "penguins-api")) != set(addresses):
            assert time.monotonic() < deadline, f"up: {up}\n{prometheus.output()}"
            time.sleep(0.5)
        rules = requests.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert rules, "the team config loads no rules"


def _up_targets(url: str, job: str) -> set[str]:
    """Return the instances of ``job`` that Prometheus scraped successfully."""
    active = requests.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    return {
        t["labels"]["instance"] for t in active if t["labels"]["job"] == job and t["health"] == "up"
    }
