"""The MLflow tracking store and model registry: connecting, describing versions, following them.

The API follows its model URI to serve the version it points at; the exporter follows
the same alias to measure drift against that version's training data. Both do it with
one :class:`VersionWatcher`, which looks the URI up, builds what it needs for a new
version beside the current one, and swaps it in only once it is built.

The store is a ``sqlite:///`` file or an MLflow tracking server (``http(s)://``), whose
URI may carry a password: every message made here from a URI or from an error that
quotes one goes through :func:`penguins.config.redact`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Generic, TypeVar

import requests
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from penguins.config import redact, redact_uri, sqlite_path

log = logging.getLogger(__name__)

# Run artifact holding the training split (features + species): the drift reference.
REFERENCE_ARTIFACT = "reference/training_data.csv"
# Model-version tag naming the algorithm ("random_forest", ...).
ALGORITHM_TAG = "algorithm"
# The version label of a model served from outside the registry (runs:/..., a path).
UNREGISTERED = "unregistered"
# A version that failed is tried again after this many refresh intervals, doubling
# with each failure up to this many seconds: a broken version costs a log line and a
# counter now and then, not a load every few seconds.
MAX_RETRY_SECONDS = 600.0

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")

T = TypeVar("T")


class StoreError(RuntimeError):
    """The tracking store cannot be reached or used."""


def limit_http_retries() -> None:
    """Make an unreachable HTTP tracking server fail in seconds, not minutes, unless set."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# urllib3 says "Retrying (...)" on this logger before MLflow's last attempt; the failure
# that follows is reported on its own, so the retry line only repeats it at length.
RETRY_LOGGER = "urllib3.connectionpool"


def _drop_retries(record: logging.LogRecord) -> bool:
    """Return False for urllib3's retry warning, True for every other record."""
    return not str(record.msg).startswith("Retrying")


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """Keep urllib3's retry warnings out of the log while the block runs, and only then.

    Each block adds a filter of its own: blocks nest (a look-up that connects first),
    and threads overlap, without one's end lifting another's silence.
    """
    logger = logging.getLogger(RETRY_LOGGER)

    def own(record: logging.LogRecord) -> bool:
        """Drop urllib3's retry warning (this block's filter)."""
        return _drop_retries(record)

    logger.addFilter(own)
    try:
        yield
    finally:
        logger.removeFilter(own)


def _causes(exc: BaseException) -> list[BaseException]:
    """Return an exception and the chain of exceptions behind it, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def unreachable_reason(exc: BaseException) -> str | None:
    """Return why no connection to the server was made, or None when one was."""
    chain = _causes(exc)
    # The innermost operating-system error says it best; urllib3's own classes overlap
    # (a refused connection is a kind of connect timeout to urllib3).
    for cause in reversed(chain):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, TimeoutError):
            return "no answer in time"
    if any(isinstance(cause, requests.ConnectionError) for cause in chain):
        return "no connection"
    return None


def is_server(tracking_uri: str) -> bool:
    """Return whether a tracking URI names an MLflow tracking server (``http(s)://``)."""
    return tracking_uri.startswith(("http://", "https://"))


# MLflow 3's server answers 403 with this body to a Host header not in its --allowed-hosts.
_REFUSED_HOST = "Invalid Host header"


def server_problem(tracking_uri: str, exc: BaseException) -> str | None:
    """Say why a tracking server did not answer a request (not reached, Host refused), or None."""
    if not is_server(tracking_uri):
        return None
    shown = redact_uri(tracking_uri)
    reason = unreachable_reason(exc)
    if reason is not None:
        return (
            f"cannot reach the MLflow tracking server at {shown}: {reason}; "
            "start it or check --tracking-uri (MLFLOW_TRACKING_URI)"
        )
    if any(_REFUSED_HOST in str(cause) for cause in _causes(exc)):
        return (
            f"the MLflow tracking server at {shown} refuses the Host it is reached by: "
            "add HOST:PORT of MLFLOW_TRACKING_URI to the server's --allowed-hosts"
        )
    return None


def store_problem(tracking_uri: str, exc: BaseException) -> str:
    """Say in one line, without any password, why the store failed ``exc``'s request."""
    return server_problem(tracking_uri, exc) or redact(
        f"cannot use tracking store {tracking_uri}: {first_line(exc)}", tracking_uri
    )


def connect(tracking_uri: str) -> MlflowClient:
    """Return a client for the store, checking that the store answers.

    A tracking server that cannot be reached is said in one short line, without
    urllib3's retry warnings; every script reaches its store through here.
    """
    limit_http_retries()
    if _gevent_sockets():
        fit_mlflow_to_gevent()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        with quiet_retries():
            client.search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many kinds here (HTTP, SQLAlchemy, OS errors)
        raise StoreError(store_problem(tracking_uri, exc)) from exc
    return client


# ---- MLflow in the API's gevent workers ------------------------------------------------
#
# The API's workers patch sockets for gevent but keep real threads for background work
# (penguins/serving/worker.py). A gevent socket belongs to the hub of the thread that
# opened it, and fails in any other ("cannot switch to a different thread"); the
# standard queues are gevent's, so a real thread waiting on one fails too (LoopExit).
# MLflow shares one HTTP session, and its pooled connections, across all threads; and it
# copies artifacts, from a tracking server or a local folder alike, in a pool of threads
# that wait on such a queue. So, in such a process only: one session per thread, and
# artifacts copied in the thread that asks for them (a model is a handful of small files).


def _gevent_sockets() -> bool:
    """Return whether gevent has patched this process's sockets (an API worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


class InThisThread(Executor):
    """An executor that runs each task at once, in the thread that submits it."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Run ``fn`` now; return its finished future."""
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the future carries it, as a pool's would
            future.set_exception(exc)
        return future


_thread_sessions = threading.local()


def _session_of_this_thread(
    max_retries,
    backoff_factor,
    backoff_jitter,
    retry_codes,
    raise_on_status,
    respect_retry_after_header=True,
):
    """Return this thread's MLflow HTTP session for these retry settings, made on first use.

    Takes the place of ``mlflow.utils.request_utils._get_request_session``, whose one
    session per process is shared by every thread.
    """
    from mlflow.utils import request_utils

    settings = (max_retries, backoff_factor, backoff_jitter, retry_codes, raise_on_status)
    key = (os.getpid(), *settings, respect_retry_after_header)
    sessions = _thread_sessions.__dict__.setdefault("sessions", {})
    if key not in sessions:
        make = request_utils._cached_get_request_session.__wrapped__  # lru_cache's inner maker
        sessions[key] = make(*settings, os.getpid(), respect_retry_after_header)
    return sessions[key]


def fit_mlflow_to_gevent() -> None:
    """Give each thread its own MLflow HTTP session, and download artifacts without a pool."""
    from mlflow.store.artifact.artifact_repo import ArtifactRepository
    from mlflow.utils import request_utils

    request_utils._get_request_session = _session_of_this_thread
    ArtifactRepository._create_thread_pool = lambda self: InThisThread()


def store_identity(tracking_uri: str) -> tuple[int, int] | None:
    """Return the identity (device, inode) of a ``sqlite:///`` store's file, else None.

    A store replaced at its path (a new ``mlflow.db`` trained where the old one was)
    has a new identity; None for a tracking server, or while the file is not there.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def reopen_store(tracking_uri: str) -> None:
    """Close MLflow's pooled connections to a ``sqlite:///`` store's file.

    MLflow keeps one SQLAlchemy engine per database URI for the life of the process
    (``SqlAlchemyStore._engine_map``, one map each for tracking and the registry), and
    its pooled connections keep the file they opened, even after it was moved away or
    replaced. Disposing of the engine empties its pool: the next query opens whatever
    file is at the path now.
    """
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    path = sqlite_path(tracking_uri)
    if path is None:
        return
    for engines in {id(m): m for m in (Tracking._engine_map, Registry._engine_map)}.values():
        for engine in list(engines.values()):
            database = engine.url.database
            if database and os.path.abspath(database) == os.path.abspath(path):
                engine.dispose()


def missing_store(tracking_uri: str) -> str | None:
    """Say why a ``sqlite:///`` store cannot be followed yet: its file does not exist.

    Asking MLflow about a missing SQLite store would create an empty one as a side effect.
    """
    path = sqlite_path(tracking_uri)
    if path is None or path.exists():
        return None
    if not path.parent.is_dir():
        return (
            f"no tracking store at {path}: the folder {path.parent} does not exist; "
            "check MLFLOW_TRACKING_URI (or --tracking-uri), or train first: python modelling.py"
        )
    return f"no tracking store at {path}: train first with python modelling.py"


def get_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """Return the model version an alias points to, or None when model or alias is missing."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass(frozen=True)
class ModelDescription:
    """What the API and the exporter say about a model version."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    algorithm: str
    metrics: dict[str, float]

    @classmethod
    def unregistered(cls, uri: str) -> ModelDescription:
        """Describe a model that is not in the registry (``runs:/...``, a path)."""
        return cls(uri, UNREGISTERED, None, None, "unknown", {})


def describe_version(
    client: MlflowClient, version: ModelVersion, alias: str | None
) -> ModelDescription:
    """Gather the algorithm and test metrics of a model version from its run.

    A version whose run is gone (deleted) is still described, without metrics; a store
    that fails to answer raises, so that the version is described once it answers.
    """
    metrics: dict[str, float] = {}
    algorithm = version.tags.get(ALGORITHM_TAG) or "unknown"
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            why = redact(first_line(exc), client.tracking_uri)
            log.warning("no run details for %s v%s: %s", version.name, version.version, why)
        else:
            metrics = dict(run.data.metrics)
            if algorithm == "unknown":
                algorithm = run.data.params.get(ALGORITHM_TAG, algorithm)
    return ModelDescription(
        name=version.name,
        version=str(version.version),
        alias=alias,
        run_id=version.run_id,
        algorithm=algorithm,
        metrics=metrics,
    )


@dataclass(frozen=True)
class Target:
    """What a model URI points at now: its description and where to download it from.

    ``tracking_uri`` is the store that resolves ``download_uri``: a tracking server's
    ``mlflow-artifacts:/`` URIs are downloaded through the server itself.
    """

    description: ModelDescription
    download_uri: str
    tracking_uri: str | None = None

    @property
    def version(self) -> str:
        """Return the registry version (or ``unregistered``)."""
        return self.description.version


@dataclass(frozen=True)
class ModelPointer:
    """An MLflow model URI and the tracking store behind it."""

    uri: str
    tracking_uri: str

    @classmethod
    def of_alias(cls, tracking_uri: str, name: str, alias: str) -> ModelPointer:
        """Return the pointer of ``models:/NAME@ALIAS``."""
        return cls(f"models:/{name}@{alias}", tracking_uri)

    def connect(self) -> MlflowClient:
        """Return a client of the tracking store, checking that it answers."""
        return connect(self.tracking_uri)

    def missing(self) -> str | None:
        """Say why the store cannot be asked yet (a SQLite file not there), else None."""
        return missing_store(self.tracking_uri)

    def identity(self) -> tuple[int, int] | None:
        """Return the identity of the store's file (see :func:`store_identity`)."""
        return store_identity(self.tracking_uri)

    @property
    def alias(self) -> str | None:
        """Return the alias the URI follows, or None for a URI that never moves."""
        match = _REGISTRY_URI.match(self.uri)
        return match["alias"] if match else None

    def version(self, client: MlflowClient) -> ModelVersion | str | None:
        """Return the registry version the URI names now (one cheap query).

        None while the alias or model does not exist; ``UNREGISTERED`` for a URI
        outside the registry.
        """
        match = _REGISTRY_URI.match(self.uri)
        if match is None:
            return UNREGISTERED
        if match["alias"]:
            return get_alias_version(client, match["name"], match["alias"])
        return client.get_model_version(match["name"], match["version"])

    def target(self, client: MlflowClient, version: ModelVersion | str) -> Target:
        """Describe a version found by :meth:`version` and say where to download it."""
        if isinstance(version, str):
            return Target(ModelDescription.unregistered(self.uri), self.uri, self.tracking_uri)
        description = describe_version(client, version, self.alias)
        uri = client.get_model_version_download_uri(version.name, version.version)
        return Target(description, uri, self.tracking_uri)


@dataclass(frozen=True)
class Built(Generic[T]):
    """What a watcher built for one version: the value and the target it was built from."""

    value: T
    target: Target


class VersionWatcher(Generic[T]):
    """Follow a :class:`ModelPointer` and hold what ``build`` made of the version it names.

    ``build(target)`` makes the value for a new version (a loaded model, a drift
    reference) and raises to refuse it; the current value stays until a new one is
    built, and is replaced with one assignment, so a reader of :attr:`current` never
    sees half a swap. :meth:`refresh` says what happened; :attr:`reason` says, in words
    a person can act on, why nothing is current.
    """

    def __init__(
        self,
        pointer: ModelPointer,
        build: Callable[[Target], T],
        refresh_seconds: float,
        *,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
        on_swap: Callable[[Built[T], Built[T] | None, bool], None] | None = None,
        on_failure: Callable[[bool], None] | None = None,
        verb: str = "following",
        meanwhile: str = "waiting until one appears",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare to follow ``pointer``; nothing is looked up until :meth:`refresh`.

        ``on_swap(new, old, initial)`` and ``on_failure(initial)`` are told of each swap
        and each refused version; ``initial`` is true for the first look-up only.
        """
        self.pointer = pointer
        self.refresh_seconds = refresh_seconds
        self.max_retry_seconds = max_retry_seconds
        self.built: Built[T] | None = None
        self.reason: str | None = "not looked up yet"
        self.error: BaseException | None = None
        self.problem: str | None = None  # the last look-up failure in one line, fit to print
        self._build = build
        self._on_swap = on_swap or (lambda new, old, initial: None)
        self._on_failure = on_failure or (lambda initial: None)
        self._verb, self._meanwhile = verb, meanwhile
        self._clock = clock
        self._lock = threading.Lock()
        self._looked_up = False
        self._checked_at: float | None = None
        self._failures: dict[str, tuple[int, float]] = {}  # version -> (count, retry at)
        self._client: MlflowClient | None = None
        self._identity: tuple[int, int] | None = None  # of the store the client reads
        self._stale = False  # what is built came from a store since replaced
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> T | None:
        """Return the value of the version being followed, or None while there is none."""
        built = self.built
        return None if built is None else built.value

    def _store(self) -> MlflowClient:
        """Return this process's client of the tracking store, connecting on first use."""
        if self._client is None:
            self._client = self.pointer.connect()
        return self._client

    def refresh(self) -> str:
        """Follow what the pointer names now; return what happened.

        One of ``unchanged``, ``missing`` (nothing to follow yet), ``swapped``,
        ``failed`` (the new version was refused; the current value stays), ``waiting``
        (a failed version not due for another try) or ``unreachable`` (the store did
        not answer). :attr:`error` holds the exception of ``failed`` and ``unreachable``;
        :attr:`problem` says what went wrong with an ``unreachable`` store, in one line.
        """
        with self._lock:
            initial, self._looked_up = not self._looked_up, True
            self._checked_at = self._clock()
            self.error = self.problem = None
            missing = self.pointer.missing()
            if missing is not None:
                return self._missing(missing)
            self._follow_replaced_store()
            try:
                with quiet_retries():  # one line per failed look-up, not urllib3's too
                    client = self._store()
                    version = self.pointer.version(client)
                if version is None:
                    where = self.pointer.tracking_uri
                    return self._missing(f"no model {self.pointer.uri} in {where}")
                number = version if isinstance(version, str) else str(version.version)
                if (
                    self.built is not None
                    and not self._stale
                    and self.built.target.version == number
                ):
                    return "unchanged"
                if not self._due(number):
                    return "waiting"
                with quiet_retries():
                    target = self.pointer.target(client, version)
            except Exception as exc:  # store down, locked or gone: keep what we have
                self._client, self.error = None, exc
                self.problem = self._lookup_problem(exc)
                log.warning("%s", self.problem)
                if self.built is None:
                    self.reason = self.problem
                return "unreachable"
            return self._try_build(target, initial)

    def _lookup_problem(self, exc: BaseException) -> str:
        """Say in one line, without any password, why looking the URI up failed."""
        tracking_uri = self.pointer.tracking_uri
        if isinstance(exc, StoreError):  # from connect(): said already
            detail = str(exc)
        else:
            detail = server_problem(tracking_uri, exc) or first_line(exc)
        return self._shown(f"cannot look up {self.pointer.uri}: {detail}")

    def _shown(self, text: str) -> str:
        """Return ``text`` fit to print: every password of the pointer's URIs replaced."""
        return redact(text, self.pointer.tracking_uri, self.pointer.uri)

    def _follow_replaced_store(self) -> None:
        """Reopen the store if its file was replaced since the client opened it.

        Version numbers of the new store say nothing about the old one's (both may have
        a v1), so what was built is rebuilt from the new store's version, whatever its
        number; earlier refusals are forgotten with the store they came from.
        """
        identity = self.pointer.identity()
        if identity == self._identity:
            return
        if self._identity is not None:
            log.warning(
                "tracking store %s was replaced; following the new one",
                self.pointer.tracking_uri,
            )
            reopen_store(self.pointer.tracking_uri)
            self._client = None
            self._stale = self.built is not None
            self._failures.clear()
        self._identity = identity

    def refresh_if_due(self) -> str | None:
        """Refresh when ``refresh_seconds`` have passed since the last look-up, else None."""
        checked = self._checked_at
        if checked is not None and self._clock() - checked < self.refresh_seconds:
            return None
        return self.refresh()

    def _missing(self, reason: str) -> str:
        """Note that there is nothing to follow, logging the reason once when it changes."""
        reason = self._shown(reason)
        if self.built is None and reason != self.reason:
            log.warning("%s; %s", reason, self._meanwhile)
        if self.built is None:
            self.reason = reason
        return "missing"

    def _due(self, version: str) -> bool:
        """Return whether a version may be tried now (a failed one waits its back-off)."""
        failures, retry_at = self._failures.get(version, (0, 0.0))
        return not failures or self._clock() >= retry_at

    def _try_build(self, target: Target, initial: bool) -> str:
        """Build the value of a new version beside the current one; swap it in if it builds."""
        version = target.version
        try:
            value = self._build(target)
        except Exception as exc:  # any failure to build refuses the version
            failures, _ = self._failures.get(version, (0, 0.0))
            delay = min(self.refresh_seconds * 2**failures, self.max_retry_seconds)
            self._failures[version] = (failures + 1, self._clock() + delay)
            self.error = exc
            kept = f"v{self.built.target.version}" if self.built else "nothing"
            why = self._shown(first_line(exc))
            log.error("version %s refused (%s); keeping %s", version, why, kept)
            if self.built is None:
                self.reason = self._shown(f"{self.pointer.uri} v{version} cannot be used: {why}")
            self._on_failure(initial)
            return "failed"
        old, self.built = self.built, Built(value, target)
        self._stale = False
        self.reason = None
        self._failures.pop(version, None)
        self._on_swap(self.built, old, initial)
        log.info(
            "%s %s v%s (%s) from %s, was %s",
            self._verb,
            target.description.name,
            version,
            target.description.algorithm,
            self._shown(self.pointer.uri),
            f"v{old.target.version}" if old else "nothing",
        )
        return "swapped"

    def start(self) -> None:
        """Refresh every ``refresh_seconds`` in a background thread (start it after any fork)."""
        if self._thread is None and self.refresh_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="model-refresh", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Refresh until stopped; a URI that never moves stops once it is followed."""
        while not self._stop.wait(self.refresh_seconds):
            if self.built is not None and self.pointer.alias is None:
                return
            try:
                self.refresh()
            except Exception:  # never let the thread die: the next round may succeed
                # The traceback quotes what failed, URIs and all: passed through redact too.
                trace = self._shown(traceback.format_exc())
                log.error("refreshing %s failed\n%s", self._shown(self.pointer.uri), trace)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background refresh and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
