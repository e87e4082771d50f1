"""``python ml_serving.py`` as users start it: real processes, real HTTP, several workers."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from penguins.config import PROJECT_DIR, sqlite_uri
from tests.integration.serving.conftest import ApiServer, running
from tests.integration.serving.versions import champion_source, register_version
from tests.support import wait_for_http
from tests.support.predlog import logged_count, logged_ids
from tests.support.samples import SAMPLE

WORKERS = 2
TIMEOUT = 10  # seconds per HTTP request
API = "http://localhost:5000"  # where the examples send


def value(metrics: dict, name: str, **labels: str) -> float:
    """Return one sample of a scrape, 0 when absent."""
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def predict_requests(metrics: dict) -> float:
    """Return the count of answered POST /predict with status 200."""
    return value(metrics, "ml_requests_total", method="POST", endpoint="/predict", status="200")


@pytest.fixture(scope="module")
def api_server(trained_store, tmp_path_factory) -> Iterator[ApiServer]:
    """Return one server on the session store for the tests that only send traffic."""
    root = tmp_path_factory.mktemp("api-server")
    env = {
        "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
        "PREDICTION_LOG_URI": sqlite_uri(root / "predictions.db"),
        "MODEL_REFRESH_SECONDS": "1",
    }
    with running(root, env, workers=WORKERS) as server:
        yield server


class Load:
    """Steady /predict traffic from a few threads, remembering every answer."""

    def __init__(self, url: str, threads: int = 2) -> None:
        """Start sending."""
        self.url = url
        self.answers: list[tuple[int, str | None, str | None]] = []  # status, version, id
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        """Send until stopped; a connection error ends this thread's run."""
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    resp = session.post(f"{self.url}/predict", json=SAMPLE, timeout=TIMEOUT)
                except requests.RequestException as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    return
                body = resp.json() if resp.status_code == 200 else {}
                with self._lock:
                    self.answers.append(
                        (resp.status_code, body.get("model_version"), body.get("prediction_id"))
                    )

    def recent_versions(self, n: int) -> set[str | None]:
        """Return the model versions of the last ``n`` answers."""
        with self._lock:
            return {version for _, version, _ in self.answers[-n:]}

    def wait_until(self, condition, timeout: float, what: str) -> None:
        """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop sending and wait for the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT + 5)


# ---- one server, traffic only ----------------------------------------------------------


def test_ids_from_several_workers_are_unique_and_ordered_by_their_millisecond(api_server):
    def batch_ids(_: int) -> list[str]:
        body = {"samples": [SAMPLE] * 20}
        resp = requests.post(f"{api_server.url}/predict/batch", json=body, timeout=TIMEOUT)
        return [p["prediction_id"] for p in resp.json()["predictions"]]

    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(batch_ids, range(60)))
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == len(every) == 60 * 20
    assert all(uuid.UUID(i).version == 7 for i in every)
    assert all(batch == sorted(batch) for batch in batches)
    # One request after another, each on a new connection (so any worker may answer):
    # a later answer never carries an earlier millisecond.
    sequential = [batch_ids(0)[0] for _ in range(40)]
    millis = [uuid.UUID(i).int >> 80 for i in sequential]
    assert millis == sorted(millis)


def test_concurrent_requests_reconcile_exactly_with_the_metrics(api_server):
    n = 120
    before = api_server.metrics()

    def predict_then_feedback(_: int) -> tuple[int, int]:
        answer = requests.post(f"{api_server.url}/predict", json=SAMPLE, timeout=TIMEOUT)
        body = {"prediction_id": answer.json()["prediction_id"], "actual_species": "Adelie"}
        feedback = requests.post(f"{api_server.url}/feedback", json=body, timeout=TIMEOUT)
        return answer.status_code, feedback.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(predict_then_feedback, range(n)))
    assert statuses == [(200, 200)] * n  # feedback works at once, whichever worker gets it
    scrapes = [api_server.metrics() for _ in range(2 * WORKERS)]  # answered by several workers
    for after in scrapes:
        assert predict_requests(after) - predict_requests(before) == n
        feedback = value(
            after, "ml_requests_total", method="POST", endpoint="/feedback", status="200"
        ) - value(before, "ml_requests_total", method="POST", endpoint="/feedback", status="200")
        assert feedback == n
        predicted = sum(
            v - before.get(k, 0.0) for k, v in after.items() if k[0] == "ml_predictions_total"
        )
        assert predicted == n
    served = [k for k, v in scrapes[-1].items() if k[0] == "ml_model_info" and v == 1]
    assert len(served) == 1, "one served version, one series: no per-process duplicates"
    assert all("pid" not in dict(labels) for _, labels in scrapes[-1])


def test_a_worker_restart_keeps_the_totals(api_server):
    """A worker that exits must not take the shared metrics directory or the counts along."""
    before = predict_requests(api_server.metrics())
    for _ in range(10):
        assert requests.post(f"{api_server.url}/predict", json=SAMPLE, timeout=TIMEOUT).ok
    master = psutil.Process(api_server.process.pid)
    victim = master.children()[0]
    victim.terminate()
    victim.wait(TIMEOUT)
    deadline = time.monotonic() + 30
    while len([p for p in master.children() if p.pid != victim.pid]) < WORKERS:
        assert time.monotonic() < deadline, "gunicorn did not replace the worker"
        time.sleep(0.1)
    wait_for_http(f"{api_server.url}/health")
    for _ in range(4 * WORKERS):
        assert requests.post(f"{api_server.url}/predict", json=SAMPLE, timeout=TIMEOUT).ok
    after = api_server.metrics()
    assert predict_requests(after) - before == 10 + 4 * WORKERS
    served = [k for k, v in after.items() if k[0] == "ml_model_info" and v == 1]
    assert len(served) == 1


def example_files() -> list[Path]:
    """Return README.md and the docs, where users read the curl examples."""
    return [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").rglob("*.md"))]


def examples_text() -> str:
    """Return the text of every file that holds examples, one after the other."""
    return "\n".join(path.read_text() for path in example_files())


def curl_examples(text: str) -> list[list[str]]:
    """Return the API's curl commands (to localhost:5000) in the ```bash blocks of a text."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        commands += [shlex.split(line) for line in joined.splitlines() if line.startswith("curl")]
    # What a command pipes its output into (| jq, | grep) is not part of the request.
    commands = [args[: args.index("|")] if "|" in args else args for args in commands]
    return [args for args in commands if any(a.startswith(API) for a in args)]


def curl_data(args: list[str]) -> str | None:
    """Return the body a curl command sends, if any."""
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-d", "--data", "--data-raw", "--data-binary"):
            return value
    return None


def send_curl(args: list[str], base_url: str) -> requests.Response:
    """Send what a curl command would, to ``base_url`` instead of localhost:5000."""
    method, headers, data, url = None, {}, None, None
    it = iter(args[1:])
    for arg in it:
        if arg in ("-X", "--request"):
            method = next(it)
        elif arg in ("-H", "--header"):
            name, _, val = next(it).partition(":")
            headers[name.strip()] = val.strip()
        elif arg in ("-d", "--data", "--data-raw", "--data-binary"):
            data = next(it)
        elif arg.startswith("http"):
            url = arg
        else:
            assert arg in ("-s", "-i", "--silent", "--include", "-sS", "-S"), f"unknown {arg}"
    assert url and url.startswith(API), url
    method = method or ("POST" if data is not None else "GET")
    target = base_url + url[len(API) :]
    return requests.request(method, target, headers=headers, data=data, timeout=TIMEOUT)


def test_the_curl_examples_of_readme_and_docs_work_as_written(api_server):
    examples = [args for path in example_files() for args in curl_examples(path.read_text())]
    paths = set()
    for args in examples:
        resp = send_curl(args, api_server.url)
        path = next(a for a in args if a.startswith(API))[len(API) :]
        paths.add(path)
        if path == "/feedback":  # its id cannot exist yet: a 404 proves the body is valid
            assert resp.status_code == 404, resp.text
            assert resp.json()["error"] == "unknown prediction_id"
            assert uuid.UUID(json.loads(curl_data(args))["prediction_id"])
        else:
            assert resp.status_code == 200, f"{' '.join(args)} -> {resp.status_code} {resp.text}"
    routes = {"/", "/health", "/predict", "/predict/batch", "/feedback", "/model/info", "/metrics"}
    assert routes | {"/openapi.json"} <= paths


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b" " * (11 * 1024 * 1024), 413),
        (b"\xff\xfe\xfa\xfb", 400),
        (b"[" * 200_000, 400),
        (json.dumps(SAMPLE).replace("39.1", "NaN").encode(), 422),
        (json.dumps(SAMPLE).replace("39.1", "1e400").encode(), 422),
    ],
    ids=["over the size limit", "not UTF-8", "deep nesting", "NaN", "overflow"],
)
def test_hostile_bodies_get_json_client_errors_over_http(api_server, body, status):
    resp = requests.post(
        f"{api_server.url}/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["error"]


def test_unknown_routes_and_methods_over_http(api_server):
    assert requests.get(f"{api_server.url}/nope", timeout=TIMEOUT).status_code == 404
    resp = requests.put(f"{api_server.url}/predict", timeout=TIMEOUT)
    assert resp.status_code == 405
    assert resp.json()["error"]


# ---- servers of their own --------------------------------------------------------------


def test_champion_swap_under_load_fails_nothing_and_refuses_a_broken_version(
    serve, store_copy, tmp_path
):
    server = serve(
        {
            "MLFLOW_TRACKING_URI": store_copy,
            "PREDICTION_LOG_URI": sqlite_uri(tmp_path / "predictions.db"),
            "MODEL_REFRESH_SECONDS": "1",
        },
        workers=WORKERS,
    )
    server.wait_ready()
    # Every worker has booted on v1: so each one's move to v2 counts as a reload.
    server.process.wait_for_log("serving penguins-classifier v1", WORKERS)
    good = champion_source(store_copy)
    load = Load(server.url)
    try:
        load.wait_until(lambda: len(load.answers) >= 20, 20, "first answers")
        assert load.recent_versions(20) == {"1"}
        register_version(store_copy, **good)  # version 2 becomes champion
        load.wait_until(
            lambda: load.recent_versions(40) == {"2"}, 20, "every worker answering with v2"
        )
        metrics = server.metrics()
        assert value(metrics, "ml_model_reloads_total", result="success") == WORKERS
        algorithm = good["tags"]["algorithm"]
        run_id = good["run_id"]
        info = {"model": algorithm, "run_id": run_id}
        assert value(metrics, "ml_model_info", version="1", **info) == 0
        assert value(metrics, "ml_model_info", version="2", **info) == 1

        register_version(store_copy, str(tmp_path / "deleted-artifacts"), {"algorithm": "svm"})
        load.wait_until(
            lambda: value(server.metrics(), "ml_model_reloads_total", result="failed") >= WORKERS,
            20,
            "every worker refusing version 3",
        )
        n = len(load.answers)
        load.wait_until(lambda: len(load.answers) >= n + 20, 20, "answers after the refusal")
        assert load.recent_versions(20) == {"2"}
        health = requests.get(f"{server.url}/health", timeout=TIMEOUT).json()
        assert health["model_version"] == "2"
    finally:
        load.stop()
    assert not load.errors
    assert {status for status, _, _ in load.answers} == {200}, "no request failed during swaps"


def test_every_worker_follows_a_store_replaced_at_its_path(
    serve, store_copy, trained_store, tmp_path
):
    register_version(store_copy, **champion_source(store_copy))  # v2 is champion
    server = serve(
        {
            "MLFLOW_TRACKING_URI": store_copy,
            "PREDICTION_LOG_URI": sqlite_uri(tmp_path / "predictions.db"),
            "MODEL_REFRESH_SECONDS": "1",
        },
        workers=WORKERS,
    )
    server.wait_ready()
    server.process.wait_for_log("serving penguins-classifier v2", WORKERS)
    load = Load(server.url)
    try:
        load.wait_until(lambda: len(load.answers) >= 20, 20, "first answers")
        assert load.recent_versions(20) == {"2"}
        path = Path(store_copy.removeprefix("sqlite:///"))
        path.rename(path.with_name("moved-away.db"))
        shutil.copy(trained_store.root / "mlflow.db", path)  # a new store: champion v1
        load.wait_until(
            lambda: load.recent_versions(40) == {"1"}, 30, "every worker answering with v1"
        )
        server.process.wait_for_log("was replaced; following the new one", WORKERS)
    finally:
        load.stop()
    assert not load.errors
    assert {status for status, _, _ in load.answers} == {200}


def test_sigterm_loses_no_answered_prediction(serve, trained_store, tmp_path):
    log_uri = sqlite_uri(tmp_path / "predictions.db")
    env = {"MLFLOW_TRACKING_URI": trained_store.tracking_uri, "PREDICTION_LOG_URI": log_uri}
    server = serve(env, workers=WORKERS)
    server.wait_ready()
    load = Load(server.url, threads=3)
    load.wait_until(lambda: len(load.answers) >= 60, 30, "traffic before the stop")
    metrics_dir = Path(re.search(r"metrics in (\S+)", server.process.output())[1])
    assert metrics_dir.is_dir()
    assert server.process.stop() == 0  # SIGTERM while requests are in flight
    load.stop()
    assert not metrics_dir.exists(), "the server removes the metrics directory it made"
    answered = [pid for status, _, pid in load.answers if status == 200]
    assert len(answered) >= 60
    assert logged_count(log_uri) >= len(answered)
    logged = set(logged_ids(log_uri))
    assert all(pid in logged for pid in answered)

    restarted = serve(env, workers=WORKERS)
    restarted.wait_ready()
    body = {"prediction_id": answered[0], "actual_species": "Adelie"}
    resp = requests.post(f"{restarted.url}/feedback", json=body, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.json() == {"prediction_id": answered[0], "correct": True}


@pytest.mark.parametrize("folder_exists", [True, False], ids=["no file", "no folder"])
def test_a_mistyped_store_path_is_reported_and_never_created(serve, tmp_path, folder_exists):
    folder = tmp_path / ("store" if folder_exists else "no/such/dir")
    if folder_exists:
        folder.mkdir()
    store = folder / "mlflow.db"
    server = serve(
        {
            "MLFLOW_TRACKING_URI": sqlite_uri(store),
            "PREDICTION_LOG_URI": sqlite_uri(tmp_path / "predictions.db"),
            "MODEL_REFRESH_SECONDS": "0.2",
        },
        workers=WORKERS,
    )
    health = server.wait_ready(ok=(503,)).json()
    assert health["status"] == "unhealthy"
    assert str(store) in health["reason"] and "python modelling.py" in health["reason"]
    if not folder_exists:
        assert "does not exist" in health["reason"]
    server.process.wait_for_log(health["reason"], WORKERS)  # every worker booted and said it
    time.sleep(1.5)  # several refresh periods: the reason is not said again
    assert server.process.output(tail=10_000_000).count(health["reason"]) == WORKERS
    assert not store.exists()
    assert folder.exists() == folder_exists


def test_starts_without_a_champion_then_serves_it_when_one_appears(
    serve, empty_store, trained_store, tmp_path
):
    server = serve(
        {
            "MLFLOW_TRACKING_URI": empty_store,
            "PREDICTION_LOG_URI": sqlite_uri(tmp_path / "predictions.db"),
            "MODEL_REFRESH_SECONDS": "1",
        },
        workers=WORKERS,
    )
    health = server.wait_ready(ok=(503,))
    server.process.wait_for_log("answering 503 until one appears", WORKERS)  # every worker booted
    body = health.json()
    assert {k: body[k] for k in ("status", "model_loaded", "model_version")} == {
        "status": "unhealthy",
        "model_loaded": False,
        "model_version": None,
    }
    assert empty_store.removeprefix("sqlite:///") in body["reason"]  # no store yet: names it
    resp = requests.post(f"{server.url}/predict", json=SAMPLE, timeout=TIMEOUT)
    assert resp.status_code == 503
    assert resp.json()["error"].startswith("no model loaded")

    register_version(empty_store, **champion_source(trained_store.tracking_uri))
    wait_for_http(f"{server.url}/health", timeout=30)

    def every_worker_serves() -> bool:
        metrics = server.metrics()
        return value(metrics, "ml_model_reloads_total", result="success") == WORKERS

    deadline = time.monotonic() + 20
    while not every_worker_serves():
        assert time.monotonic() < deadline, f"not every worker serves:\n{server.process.output()}"
        time.sleep(0.2)
    for _ in range(2 * WORKERS):
        resp = requests.post(f"{server.url}/predict", json=SAMPLE, timeout=TIMEOUT)
        assert resp.status_code == 200
        assert resp.json()["model_version"] == "1"


# ---- the examples' own text ---------------------------------------------------------


def test_the_feedback_example_uses_a_well_formed_id():
    """The examples' feedback id must be well-formed, so that the example reaches the 404."""
    text = examples_text()
    ids = re.findall(r'"prediction_id": ?"([^"]+)"', text)
    assert ids and all(uuid.UUID(i) for i in ids)
