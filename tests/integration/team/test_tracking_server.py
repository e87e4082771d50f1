"""Every script on a real MLflow tracking server, on a real PostgreSQL, with no local store.

Training, ``python ml_serving.py`` and ``python prometheus_exporter.py`` run from empty
folders with ``MLFLOW_TRACKING_URI=http://...`` of the session's tracking server: models,
the drift reference and run artifacts all come through the server. The server is then
stopped: the loaded model keeps serving, a worker started meanwhile says why it has no
model and recovers by itself, and a champion moved once the server is back is served.
No password shows anywhere: not the tracking URI's, nor the backend store's.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow.entities.model_registry import ModelVersion
from prometheus_client.parser import text_string_to_metric_families

import modelling
from penguins.config import EXPERIMENT_NAME, PROJECT_DIR, sqlite_uri
from penguins.registry import StoreError, connect
from tests.support import ManagedProcess, free_port
from tests.support.mlflow_server import (
    TEAM_HOSTS,
    TRACKING_PASSWORD,
    TRACKING_USER,
    ServedStore,
    TrackingServer,
    with_credentials,
)
from tests.support.postgres import PASSWORD as BACKEND_PASSWORD
from tests.support.samples import SAMPLE
from tests.support.stores import store_client

WORKERS = 2
REFRESH_SECONDS = 1
TIMEOUT = 10  # seconds per HTTP request
OUTAGE_SECONDS = 4  # long enough for a few look-ups of every worker to fail
LOCAL_STORE = ("mlflow.db", "mlruns", "mlartifacts")


def redacted(url: str) -> str:
    """Return a tracking URI with credentials (:func:`with_credentials`) as outputs show it."""
    return url.replace("://", f"://{TRACKING_USER}:***@", 1)


def unreachable(model: str, shown_uri: str) -> str:
    """Return the line that says a model's tracking server cannot be reached."""
    return (
        f"cannot look up models:/{model}@champion: cannot reach the MLflow tracking server "
        f"at {shown_uri}: connection refused; start it or check --tracking-uri "
        "(MLFLOW_TRACKING_URI)"
    )


def local_store() -> set[str]:
    """Return which local tracking-store files or folders the project folder holds."""
    return {name for name in LOCAL_STORE if (PROJECT_DIR / name).exists()}


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """Return the samples of a metrics page as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Script:
    """One of the project's scripts, started from an empty folder of its own."""

    def __init__(self, root: Path, script: str, args: list[str], env: dict[str, str]) -> None:
        """Start ``script`` from ``root/cwd`` (made empty), logging to ``root/NAME.log``."""
        self.cwd = root / "cwd"
        self.cwd.mkdir(parents=True)
        self.process = ManagedProcess.python(
            script, *args, log_path=root / f"{Path(script).stem}.log", env=env, cwd=self.cwd
        )

    def log(self) -> str:
        """Return everything the script printed so far."""
        return self.process.output(tail=10_000_000)


class Api(Script):
    """``python ml_serving.py`` on a free port of 127.0.0.1."""

    def __init__(self, root: Path, env: dict[str, str], workers: int = WORKERS) -> None:
        """Start the API with ``workers`` workers."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        super().__init__(root, "ml_serving.py", args, env)

    def get(self, path: str) -> requests.Response:
        """Send a GET to the API."""
        return requests.get(f"{self.url}{path}", timeout=TIMEOUT)

    def predict(self) -> requests.Response:
        """Send one sample to /predict."""
        return requests.post(f"{self.url}/predict", json=SAMPLE, timeout=TIMEOUT)


class Exporter(Script):
    """``python prometheus_exporter.py`` on a free port of 127.0.0.1."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        """Start the exporter."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        args = ["--host", "127.0.0.1", "--port", str(port)]
        super().__init__(root, "prometheus_exporter.py", args, env)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Scrape the exporter."""
        return parse(requests.get(self.url, timeout=30).text)

    def reference(self) -> dict[str, str] | None:
        """Return the labels of the drift reference the exporter measures against, if any."""
        for (name, labels), value in self.metrics().items():
            if name == "ml_drift_reference_info" and value == 1:
                return dict(labels)
        return None


def reference_errors(exporter: Exporter) -> float:
    """Return how many times the exporter failed to read its drift reference."""
    return exporter.metrics()[("exporter_collect_errors_total", (("source", "reference"),))]


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.5)


def service_env(tracking_uri: str, model: str, log_file: Path) -> dict[str, str]:
    """Return the environment of an API or exporter following ``model`` on a tracking server."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODEL_NAME": model,
        "PREDICTION_LOG_URI": sqlite_uri(log_file),
        "MODEL_REFRESH_SECONDS": str(REFRESH_SECONDS),
    }


# ---- what the tests share: a model of their own on the session's server -------------------


def register_champion(tracking_uri: str, name: str, source: ModelVersion) -> str:
    """Register ``source``'s model as a new version of ``name`` and make it the champion.

    The source is the registered version itself (``models:/NAME/VERSION``): a tracking
    server checks a source against its run or logged model, and takes this one as is.
    """
    client = store_client(tracking_uri)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"models:/{source.name}/{source.version}", tags=source.tags
    )
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


@pytest.fixture(scope="module")
def champion(served_tracking_store: ServedStore) -> ModelVersion:
    """Return the session's champion, as training registered it."""
    client = store_client(served_tracking_store.tracking_uri)
    return client.get_model_version_by_alias(
        served_tracking_store.model_name, served_tracking_store.alias
    )


@pytest.fixture(scope="module")
def model(served_tracking_store: ServedStore, champion: ModelVersion) -> str:
    """Register the session's champion again as a model of this module; return its name.

    The tests move this one's champion; the session's stays where training put it.
    """
    name = f"penguins-tracking-test-{uuid.uuid4().hex[:8]}"
    register_champion(served_tracking_store.tracking_uri, name, champion)
    return name


@pytest.fixture(scope="module")
def log_file(tmp_path_factory) -> Path:
    """Return the prediction log file the module's servers share (SQLite: not the subject)."""
    return tmp_path_factory.mktemp("prediction-log") / "predictions.db"


@pytest.fixture(scope="module")
def api(served_tracking_store, model, log_file, tmp_path_factory) -> Iterator[Api]:
    """Start one API on the tracking server, from an empty folder; wait for every worker."""
    env = service_env(served_tracking_store.tracking_uri, model, log_file)
    server = Api(tmp_path_factory.mktemp("api"), env)
    try:
        server.process.wait_for_http(f"{server.url}/health")
        server.process.wait_for_log(f"serving {model} v1", WORKERS)
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def exporter(served_tracking_store, model, log_file, tmp_path_factory) -> Iterator[Exporter]:
    """Start the exporter on the tracking server, through a URI with a password."""
    env = service_env(with_credentials(served_tracking_store.tracking_uri), model, log_file)
    exporter = Exporter(tmp_path_factory.mktemp("exporter"), env)
    try:
        exporter.process.wait_for_http(exporter.url)
        yield exporter
    finally:
        exporter.process.stop()


# ---- everything through the server, nothing local -----------------------------------------


def test_training_keeps_runs_and_artifacts_on_the_server_and_nothing_local(
    served_tracking_store,
):
    client = store_client(served_tracking_store.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")
    runs = client.search_runs([experiment.experiment_id])
    # One run per candidate and training (the team tests train again to move the champion).
    per_algorithm = Counter(r.data.params["algorithm"] for r in runs)
    assert set(per_algorithm) == {"logistic_regression", "random_forest", "svm"}
    assert len(set(per_algorithm.values())) == 1, per_algorithm
    for run in runs:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        files = {a.path for a in client.list_artifacts(run.info.run_id, "reference")}
        assert files == {"reference/training_data.csv"}
    champion = client.get_model_version_by_alias(
        served_tracking_store.model_name, served_tracking_store.alias
    )
    # Proxied: the files are in the server's --artifacts-destination, written by the server.
    kept = served_tracking_store.server.artifacts / experiment.experiment_id / champion.run_id
    assert (kept / "artifacts" / "reference" / "training_data.csv").is_file()
    assert list(served_tracking_store.workdir.iterdir()) == []
    assert local_store() == set()


def test_training_through_a_uri_with_a_password_never_shows_it(served_tracking_store):
    output = served_tracking_store.output
    assert TRACKING_PASSWORD in served_tracking_store.trained_with  # what it must hide
    assert f"tracking: {redacted(served_tracking_store.tracking_uri)}," in output
    assert "registered penguins-classifier version 1" in output
    assert TRACKING_PASSWORD not in output
    assert "View run" not in output  # MLflow's run links are made from the URI: left out


def test_the_api_serves_the_champion_through_the_server(api, served_tracking_store, model):
    client = store_client(served_tracking_store.tracking_uri)
    champion = client.get_model_version_by_alias(model, "champion")
    info = api.get("/model/info").json()
    assert (info["name"], info["version"], info["alias"]) == (model, "1", "champion")
    assert (info["run_id"], info["algorithm"]) == (champion.run_id, champion.tags["algorithm"])
    assert info["metrics"] == client.get_run(champion.run_id).data.metrics
    assert api.get("/health").json() == {
        "status": "healthy",
        "model_loaded": True,
        "model_version": "1",
    }
    assert api.predict().json()["model_version"] == "1"
    assert list(api.cwd.iterdir()) == []
    assert local_store() == set()
    assert "Traceback" not in api.log()


def test_the_exporter_loads_the_drift_reference_through_the_server(
    exporter, served_tracking_store, model
):
    client = store_client(served_tracking_store.tracking_uri)
    champion = client.get_model_version_by_alias(model, "champion")
    assert exporter.reference() == {"version": "1", "run_id": champion.run_id}
    assert reference_errors(exporter) == 0
    assert list(exporter.cwd.iterdir()) == []


# ---- the tracking server away ----------------------------------------------------------


@dataclass
class Outage:
    """What was seen while the session's tracking server was stopped, once for the module."""

    seconds: float  # from the stop until the last look at the servers
    answers: list[tuple[int, str | None]]  # the API's /predict: status, model version
    health: list[dict]  # the API's /health
    api_lines: list[str]  # what the API logged meanwhile
    exporter_metrics: dict[tuple[str, tuple], float]  # a scrape after it missed the server
    late: Api  # an API started meanwhile, through a URI with a password
    late_health: dict  # its /health then
    late_refused: requests.Response  # its answer to a /predict then


@pytest.fixture(scope="module")
def outage(api, exporter, tracking_server, model, log_file, tmp_path_factory) -> Iterator[Outage]:
    """Stop the tracking server a while, watching the servers; start it again on leaving.

    Meanwhile a new API starts (one worker, a password in its tracking URI): it runs
    until the module ends, for the tests to watch it recover.
    """
    seen = len(api.log())
    failing = unreachable(model, tracking_server.url)
    answers, health = [], []
    stopped = time.monotonic()
    with contextlib.ExitStack() as stack:
        with tracking_server.stopped():
            env = service_env(with_credentials(tracking_server.url), model, log_file)
            late = Api(tmp_path_factory.mktemp("late-api"), env, workers=1)
            stack.callback(late.process.stop)
            # Every worker finds the server gone, and goes on answering with what it has.
            api.process.wait_for_log(failing, api.log().count(failing) + WORKERS, timeout=30)
            late_health = late.process.wait_for_http(f"{late.url}/health", ok=(503,)).json()
            late_refused = late.predict()
            answering = time.monotonic()
            while time.monotonic() - answering < OUTAGE_SECONDS:
                answered = api.predict()
                answers.append((answered.status_code, answered.json().get("model_version")))
                health.append(api.get("/health").json())
                time.sleep(0.2)
            wait_until(lambda: reference_errors(exporter) >= 1, "the exporter to miss the server")
            scraped = exporter.metrics()
            lines = api.log()[seen:].splitlines()
            seconds = time.monotonic() - stopped
        yield Outage(seconds, answers, health, lines, scraped, late, late_health, late_refused)


def test_a_stopped_tracking_server_leaves_the_loaded_model_serving(outage, exporter, model):
    assert outage.answers and set(outage.answers) == {(200, "1")}
    assert {h["status"] for h in outage.health} == {"healthy"}
    assert ("system_memory_usage_percent", ()) in outage.exporter_metrics  # it serves on
    # A line per failed look-up of each worker, and nothing else: no traceback, no retries.
    said = f"cannot look up models:/{model}@champion: cannot reach the MLflow tracking server"
    assert outage.api_lines and all(said in line for line in outage.api_lines), outage.api_lines
    assert len(outage.api_lines) <= WORKERS * (outage.seconds / REFRESH_SECONDS + 1)
    assert "was replaced" not in "\n".join(outage.api_lines)  # that is for SQLite files


def test_a_worker_started_while_the_server_is_down_says_why_and_recovers(
    outage, tracking_server, model
):
    assert outage.late_health["reason"] == unreachable(model, redacted(tracking_server.url))
    assert outage.late_refused.status_code == 503
    late = outage.late
    late.process.wait_for_http(f"{late.url}/health", timeout=30)  # by itself
    assert late.predict().status_code == 200
    assert late.get("/model/info").json()["name"] == model


def test_the_champion_moved_once_the_server_is_back_is_followed(
    outage, api, exporter, served_tracking_store, model, champion
):
    version = register_champion(served_tracking_store.tracking_uri, model, champion)
    api.process.wait_for_log(f"serving {model} v{version}", WORKERS, timeout=30)
    assert api.get("/model/info").json()["version"] == version
    wait_until(lambda: (exporter.reference() or {}).get("version") == version, "the new reference")


def test_no_password_shows_in_answers_metrics_or_logs(outage, exporter, tracking_server):
    late = outage.late
    late.process.wait_for_http(f"{late.url}/health", timeout=30)
    paths = ("/", "/model/info", "/health", "/metrics")
    said = [outage.late_refused.text, *(late.get(path).text for path in paths), late.log()]
    said += [requests.get(exporter.url, timeout=30).text, exporter.log()]
    assert redacted(tracking_server.url) in late.log()  # the URI is said, but redacted
    assert redacted(tracking_server.url) in exporter.log()
    for password in (TRACKING_PASSWORD, BACKEND_PASSWORD):
        assert password not in "\n".join(said)


def test_training_says_why_a_server_cannot_be_reached_without_the_password(caplog):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with caplog.at_level(logging.ERROR, logger="modelling"):
        assert modelling.main(["--tracking-uri", with_credentials(nowhere)]) == 2
    assert caplog.messages == [
        f"error: cannot reach the MLflow tracking server at {redacted(nowhere)}: connection "
        "refused; start it or check --tracking-uri (MLFLOW_TRACKING_URI)"
    ]


# ---- the server itself -----------------------------------------------------------------


def test_the_server_takes_only_the_hosts_it_was_told_about(tracking_server):
    search = f"{tracking_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    port = tracking_server.port
    team_host = TEAM_HOSTS[0].replace("*", "1.2.3")  # an address of the team tests' hosts
    for host in ("localhost", "127.0.0.1", team_host):
        assert requests.get(search, headers={"Host": f"{host}:{port}"}, timeout=TIMEOUT).ok
    refused = requests.get(search, headers={"Host": f"mlflow:{port}"}, timeout=TIMEOUT)
    assert refused.status_code == 403
    # 127.0.0.2 is this machine too, but not a name the server was told about.
    with pytest.raises(StoreError) as raised:
        connect(f"http://127.0.0.2:{port}")
    assert str(raised.value) == (
        f"the MLflow tracking server at http://127.0.0.2:{port} refuses the Host it is "
        "reached by: add HOST:PORT of MLFLOW_TRACKING_URI to the server's --allowed-hosts"
    )


def test_the_backend_password_stays_off_the_command_line_and_out_of_the_log(
    tracking_server: TrackingServer,
):
    assert BACKEND_PASSWORD in tracking_server.backend_store_uri  # what it must hide
    assert BACKEND_PASSWORD not in " ".join(tracking_server.argv())
    assert BACKEND_PASSWORD not in tracking_server.output()
