"""A real MLflow tracking server for tests: ``mlflow server`` on a store, and pytest fixtures.

:class:`TrackingServer` runs the virtualenv's ``mlflow server`` as users run it in a team
deployment: a database as the backend store, artifacts proxied through the server
(``mlflow-artifacts:/`` URIs, kept in ``--artifacts-destination``), and the Host
headers it accepts listed in ``--allowed-hosts``. It can be stopped and started again on
the same port and store, as a test that takes the tracking server away needs.

The fixtures: ``tracking_server``, one server per session on a PostgreSQL database of
the session cluster (``tests.support.postgres``), listening on every address; and
``served_tracking_store``, that server trained into once per session over HTTP, as
``python modelling.py --tracking-uri http://...`` does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from penguins.config import DEFAULT_DATA_PATH, StoreSettings
from tests.support.processes import ManagedProcess, free_port
from tests.support.stores import LogLines

MLFLOW = Path(sys.executable).with_name("mlflow")
# One uvicorn worker answers a test session's requests; more would only cost memory
# and start-up time on a small machine.
WORKERS = 1
# Host headers a test's clients may send besides the loopback names: the addresses of
# the team tests' network namespaces (tests/support/netns.py) are all in 10.0.0.0/8.
TEAM_HOSTS = ("10.*",)
_LOOPBACK = ("localhost", "127.0.0.1")
_DEFAULTS = StoreSettings()


def allowed_hosts(port: int, hosts: Sequence[str] = ()) -> list[str]:
    """Return the ``--allowed-hosts`` entries for clients reaching ``port`` as ``hosts``.

    MLflow compares the whole Host header, port included, and the list replaces its
    default (loopback and private addresses), so the loopback names are listed too.
    An entry may be an fnmatch pattern (``10.*``).
    """
    return [f"{host}:{port}" for host in dict.fromkeys([*_LOOPBACK, *hosts])]


# Credentials a tracking URI may carry; the test servers run without auth and ignore them.
TRACKING_USER, TRACKING_PASSWORD = "penguins", "tracking-secret-42"


def with_credentials(url: str) -> str:
    """Return a server's tracking URI with :data:`TRACKING_USER` and its password in it."""
    return url.replace("://", f"://{TRACKING_USER}:{TRACKING_PASSWORD}@", 1)


def server_environment(backend_store_uri: str) -> dict[str, str]:
    """Return the environment ``mlflow server`` runs with.

    The backend store URI (with its password) goes by environment, not on the command
    line that ``ps`` shows. MLflow 3 also starts a job runner with seven huey
    consumers (about 2 GB) for its GenAI jobs, which this pipeline never runs; and
    telemetry would try to reach the internet.
    """
    return {
        "MLFLOW_BACKEND_STORE_URI": backend_store_uri,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


class TrackingServer:
    """``mlflow server`` on one backend store and artifacts folder, on one fixed port."""

    def __init__(
        self,
        backend_store_uri: str,
        artifacts: Path,
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        hosts: Sequence[str] = (),
        workers: int = WORKERS,
    ) -> None:
        """Prepare a server; nothing runs until :meth:`start`.

        ``host`` is the address it listens on (``0.0.0.0``: every address); ``hosts``
        are the other names or addresses clients reach it by (see :func:`allowed_hosts`).
        """
        self.backend_store_uri = backend_store_uri
        self.artifacts = Path(artifacts)
        self.log_path = Path(log_path)
        self.host = host
        self.port = port or free_port()
        self.hosts = tuple(hosts)
        self.workers = workers
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """Return the tracking URI of the server as reached from this machine."""
        return f"http://127.0.0.1:{self.port}"

    def url_at(self, address: str) -> str:
        """Return the tracking URI of the server as reached at ``address`` (a gateway, say)."""
        return f"http://{address}:{self.port}"

    def argv(self) -> list[str]:
        """Return the command line of the server (the store comes by environment)."""
        return [
            str(MLFLOW),
            "server",
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--allowed-hosts",
            ",".join(allowed_hosts(self.port, self.hosts)),
        ]

    @property
    def running(self) -> bool:
        """Return whether the server process is running."""
        return self.process is not None and self.process.alive()

    def start(self, timeout: float = 120.0) -> TrackingServer:
        """Start the server (if it is not running) and wait until ``/health`` answers."""
        if not self.running:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            self.process = ManagedProcess(
                self.argv(),
                log_path=self.log_path,
                env=server_environment(self.backend_store_uri),
                cwd=self.artifacts,  # whatever MLflow might write beside itself stays there
                name="mlflow server",
            )
        self.process.wait_for_http(f"{self.url}/health", timeout=timeout)
        return self

    def stop(self) -> None:
        """Stop the server; its store and artifacts stay, for :meth:`start` to serve again."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop the server for the block, then start it again on the same port and store."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def output(self) -> str:
        """Return the end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> TrackingServer:
        """Use the server as a context: started on entering, stopped on leaving."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()


@dataclass(frozen=True)
class ServedStore:
    """A tracking server holding a trained champion, reached over HTTP.

    ``workdir`` is the empty folder training ran from (it should still be empty);
    ``output`` is everything training printed and logged, and ``trained_with`` the
    tracking URI it was given.
    """

    server: TrackingServer
    workdir: Path
    trained_with: str
    output: str
    model_name: str = _DEFAULTS.model_name
    alias: str = _DEFAULTS.alias

    @property
    def tracking_uri(self) -> str:
        """Return the server's tracking URI."""
        return self.server.url

    @property
    def model_uri(self) -> str:
        """Return the champion's model URI."""
        return f"models:/{self.model_name}@{self.alias}"


@contextlib.contextmanager
def _everything_said() -> Iterator[list[str]]:
    """Collect what the block logs (INFO and up) and prints; the list fills on leaving."""
    said: list[str] = []
    root, handler = logging.getLogger(), LogLines()
    level, printed = root.level, io.StringIO()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield said
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        said.extend([*handler.lines, printed.getvalue()])


def train_over_http(
    server: TrackingServer,
    workdir: Path,
    *,
    tracking_uri: str | None = None,
    extra: Sequence[str] = (),
) -> ServedStore:
    """Run modelling.main against the server from the folder ``workdir``; return the store.

    As ``python modelling.py --tracking-uri http://...`` run there: nothing of the store
    is local, so nothing should appear in ``workdir``. ``tracking_uri`` is the server's
    URI as training is given it (by default :attr:`TrackingServer.url`); ``extra`` are
    more flags of modelling.py.
    """
    import modelling

    uri = tracking_uri or server.url
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--tracking-uri", uri, "--data", str(DEFAULT_DATA_PATH), *extra]
    with contextlib.chdir(workdir), _everything_said() as said:
        code = modelling.main(args)
    output = "\n".join(said)
    assert code == 0, f"training into {server.url} failed with exit code {code}:\n{output}"
    return ServedStore(server, workdir, uri, output)


@pytest.fixture(scope="session")
def tracking_server(postgres) -> Iterator[TrackingServer]:
    """Yield one tracking server per session, on a PostgreSQL database, on every address.

    It accepts the loopback names and the team tests' namespace addresses
    (:data:`TEAM_HOSTS`). A test that stops it starts it again (:meth:`TrackingServer.stopped`).
    """
    uri = postgres.create_database(f"mlflow_{uuid.uuid4().hex[:12]}")
    root = Path(tempfile.mkdtemp(prefix="penguins-mlflow-server-", dir="/tmp"))
    server = TrackingServer(
        uri, root / "artifacts", root / "mlflow-server.log", host="0.0.0.0", hosts=TEAM_HOSTS
    )
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def served_tracking_store(tracking_server, tmp_path_factory) -> ServedStore:
    """Train once per session into the session's tracking server; read-only for its users.

    Training is given the server's URI with a user and password (:func:`with_credentials`;
    the server runs without auth and ignores them), so that its output can be checked
    for the password.

    Tests that move an alias register the champion again as a model of their own
    (tests/integration/team/test_tracking_server.py does), so this one stays.
    """
    workdir = tmp_path_factory.mktemp("training-workdir")
    uri = with_credentials(tracking_server.url)
    return train_over_http(tracking_server, workdir, tracking_uri=uri)
