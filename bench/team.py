"""The team deployment: our API on a PostgreSQL log, and replicas sharing it behind nginx.

Two measurements, each interleaved like every stage of the suite:

1. The log: our API on a PostgreSQL log beside the same API on an SQLite log, both with
   the run's workers, taking 1,000- and 10,000-row ``/predict/batch`` POSTs in turn.
2. The replicas: wrk's one-row ``/predict`` load through nginx to one replica with the
   run's workers, to two replicas with half of them each (the same workers in all, so the
   ratio is what balancing and sharing the stores cost), and to two with the full count,
   every replica on the one PostgreSQL log and the one tracking store; and straight to
   the one replica, for what nginx itself costs.

PostgreSQL runs as a throwaway cluster (``tests/support/postgres.py``) set back to its
stock durability: every commit is flushed to disk before the API answers.
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests

from bench import BenchError, load, servers, system
from bench.servers import Server
from bench.settings import BenchSettings
from penguins.config import PROJECT_DIR, sqlite_uri
from tests.support.nginx import Balancer, balancing
from tests.support.processes import free_port

Say = Callable[[str], None]
BATCHES = (1000, 10_000)  # rows per timed /predict/batch
CONNECTIONS = (8, 32)  # wrk concurrencies of the replica comparison
LOG_DATABASE = "penguins_log"  # the one PostgreSQL log every server of the stage shares
# The test cluster trades durability for speed; a benchmark of what users get does not.
STOCK_DURABILITY = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Setup:
    """One way of serving the load: replicas of our API, their workers, nginx in front or not."""

    name: str
    replicas: int
    workers: int
    balanced: bool = True  # behind nginx; False: wrk talks to the one replica itself

    def describe(self) -> str:
        """Return the setup in words: 2 replicas x 1 worker, behind nginx."""
        replicas = f"{self.replicas} replica{'s' * (self.replicas > 1)}"
        workers = f"{self.workers} worker{'s' * (self.workers > 1)}"
        return f"{replicas} x {workers}, {'behind nginx' if self.balanced else 'no nginx'}"


def setups(workers: int) -> tuple[Setup, ...]:
    """Return the setups compared, for the run's workers per server.

    ``one`` and ``direct`` are the same replica; ``two`` splits its workers between two
    replicas, which is the fair comparison on a machine whose cores they already fill.
    """
    half = max(1, workers // 2)
    return (
        Setup("direct", 1, workers, balanced=False),
        Setup("one", 1, workers),
        Setup("two", 2, half),
        Setup("two-full", 2, workers),
    )


def missing(nginx: bool = True) -> str | None:
    """Return why the stage cannot run here, or None when PostgreSQL (and nginx) can."""
    from tests.support.postgres import missing_postgres

    reason = missing_postgres()
    if reason is None and nginx and shutil.which("nginx") is None:
        reason = "nginx is not installed (apt-get install nginx)"
    return reason


# -- PostgreSQL -------------------------------------------------------------------------


@contextmanager
def postgres(say: Say) -> Iterator[tuple[object, str]]:
    """Start a throwaway PostgreSQL at stock durability; yield it and its log's URI."""
    from tests.support.postgres import PostgresCluster

    # PostgreSQL runs as its own user, who must be able to enter the folder.
    root = Path(tempfile.mkdtemp(prefix="penguins-bench-pg-", dir="/tmp"))
    cluster = PostgresCluster(root, free_port())
    try:
        try:
            uri = _start_stock(cluster)
        except (RuntimeError, OSError) as exc:  # its programs failed: their output says why
            raise BenchError(f"PostgreSQL did not start: {exc}") from exc
        say(f"PostgreSQL {postgres_version(cluster)} on port {cluster.port}, {durability(cluster)}")
        yield cluster, uri
    finally:
        cluster.close()


def _start_stock(cluster) -> str:
    """Start the cluster at stock durability; return the URI of the log's database."""
    cluster.start()
    for key, value in STOCK_DURABILITY.items():
        cluster.execute(f"ALTER SYSTEM SET {key} = {value}")
    cluster.stop()  # fsync and full_page_writes take effect on a restart only
    cluster.start()
    return cluster.create_database(LOG_DATABASE)


def postgres_version(cluster) -> str:
    """Return the server's version number, such as 15.14."""
    return str(cluster.execute("SHOW server_version")[0][0]).split()[0]


def durability(cluster) -> str:
    """Return the durability settings in force, as fsync=on, synchronous_commit=on, ..."""
    return ", ".join(f"{key}={cluster.execute(f'SHOW {key}')[0][0]}" for key in STOCK_DURABILITY)


def postmaster_pid(cluster) -> int | None:
    """Return the pid of the cluster's postmaster (its first line of postmaster.pid)."""
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def log_rows(uri: str) -> int | None:
    """Return how many predictions the PostgreSQL log holds, None when it cannot be read."""
    import psycopg

    try:
        with psycopg.connect(uri, connect_timeout=10) as conn:
            return conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    except psycopg.Error:
        return None


# -- nginx ------------------------------------------------------------------------------


@contextmanager
def balancer(name: str, upstreams: list[str], tmp: Path) -> Iterator[Balancer]:
    """Start nginx with the repo's config in front of ``upstreams``; stop it on leaving.

    ``tests/support/nginx.py`` runs ``deploy/nginx/penguins.conf`` as it is, with the
    replicas' addresses and an access log in a folder of its own, as the team tests do.
    """
    root = tmp / f"nginx-{name}"
    try:
        with balancing(root, upstreams) as front:
            yield front
    except AssertionError as exc:  # the helper's way of saying nginx did not answer
        raise BenchError(f"nginx {name} did not start: {exc}") from None


def nginx_version() -> str:
    """Return nginx's version number (it prints "nginx version: nginx/1.22.1" on stderr)."""
    done = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
    return (done.stderr or done.stdout).strip().rsplit("/", 1)[-1] or "unknown"


# -- what each part of the machine spends ------------------------------------------------


def tree_cpu_s(pid: int | None) -> float:
    """Return the user + system seconds of a process and its children so far (0 if gone)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in tree:
        try:
            cpu = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += cpu.user + cpu.system
    return total


def children_cpu_s() -> float:
    """Return the CPU seconds of this process's children that have ended (wrk's runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meters:
    """The processes whose CPU a wrk run is charged for: replicas, nginx, PostgreSQL, wrk."""

    replicas: list[int]
    nginx: int | None
    postgres: int | None

    def read(self) -> dict[str, float | list[float]]:
        """Return the CPU seconds of each part so far, and the machine's CPU times."""
        times = psutil.cpu_times()
        return {
            "replicas": [tree_cpu_s(pid) for pid in self.replicas],
            "nginx": tree_cpu_s(self.nginx),
            "postgres": tree_cpu_s(self.postgres),
            "wrk": children_cpu_s(),
            "busy": sum(times) - times.idle - getattr(times, "iowait", 0.0),
            "total": sum(times),
        }


def charged(before: dict, after: dict, requests_: int) -> dict:
    """Return each part's CPU ms per request between two readings, and the machine's busy %.

    ``other`` is the rest of the machine's busy time: the other work it was doing.
    """
    per = 1000 / requests_ if requests_ else 0.0
    replicas = [b - a for a, b in zip(before["replicas"], after["replicas"], strict=True)]
    seconds = {"api": sum(replicas)}
    seconds |= {key: after[key] - before[key] for key in ("nginx", "postgres", "wrk")}
    busy, total = after["busy"] - before["busy"], after["total"] - before["total"]
    seconds["other"] = max(0.0, busy - sum(seconds.values()))
    return {
        "cpu_ms_per_request": {key: value * per for key, value in seconds.items()},
        "busy_percent": 100 * busy / total if total else 0.0,
        # How evenly nginx spread the work: the busiest replica's share of the API's CPU.
        "busiest_replica_share": max(replicas) / seconds["api"] if seconds["api"] else 0.0,
    }


# -- the stage --------------------------------------------------------------------------


def spec(name: str, settings: BenchSettings, model: dict, log_uri: str, workers: int):
    """Return the spec of one of our servers of the stage, on a log and a worker count."""
    return servers.ours(
        name,
        PROJECT_DIR,
        workers,
        MLFLOW_TRACKING_URI=model["store"],
        MODEL_NAME=settings.model_name,
        MODEL_ALIAS=settings.alias,
        PREDICTION_LOG_URI=log_uri,
    )


def start(spec_, tmp: Path, stack: ExitStack, say: Say) -> Server:
    """Start one server, idle before the next (no start-up overlaps a measurement)."""
    say(f"starting {spec_.name}")
    server = stack.enter_context(servers.running(spec_, tmp))
    servers.settle(server)
    return server


def interleaved_batches(named: dict[str, Server], rounds: int) -> dict[str, dict[str, list]]:
    """Time every batch size on every server, in turn, after one uncounted round."""
    from bench.suite import interleaved  # the suite imports this module

    calls = {}
    for name, server in named.items():
        url = server.spec.url(server.spec.routes[2])
        for n in BATCHES:
            calls[f"{name} {n}"] = (url, servers.body(server.spec, servers.rows(n), True))
    seconds = interleaved(calls, rounds, warmup=1)
    return {name: {str(n): seconds[f"{name} {n}"] for n in BATCHES} for name in named}


def batch_cpu(server: Server, pg_pid: int | None, posts: int = 3) -> dict[str, float]:
    """POST the largest batch a few times, untimed; return the CPU ms each cost, by part.

    The timed rounds say how long a batch takes; this says where its CPU went: the API's
    workers (parsing, the model, the answer, the log's client side) or PostgreSQL.
    """
    url, n = server.spec.url(server.spec.routes[2]), max(BATCHES)
    body = servers.body(server.spec, servers.rows(n), True)
    meters = Meters([server.process.pid], None, pg_pid)
    before = meters.read()
    with requests.Session() as session:
        for _ in range(posts):
            resp = session.post(url, data=body, headers=JSON, timeout=120)
            if resp.status_code != 200:
                raise BenchError(f"{server.spec.name}: batch answered {resp.status_code}")
    after = meters.read()
    return {
        "api": (sum(after["replicas"]) - sum(before["replicas"])) * 1000 / posts,
        "postgres": (after["postgres"] - before["postgres"]) * 1000 / posts,
    }


def measure_logs(logs: dict[str, Server], rounds: int, pg: tuple, say: Say) -> dict:
    """Time both batch sizes on the SQLite and the PostgreSQL log, interleaved; then their CPU."""
    cluster, uri = pg
    say(f"batches of {' and '.join(f'{n:,}' for n in BATCHES)} rows x {rounds}, each log")
    before = log_rows(uri)
    found = {name: {"batch_s": s} for name, s in interleaved_batches(logs, rounds).items()}
    found["postgresql"].update(rows_before=before, rows_after=log_rows(uri))
    for name, one in found.items():
        one["cpu_ms_per_batch"] = cpu = batch_cpu(logs[name], postmaster_pid(cluster))
        rates = [
            f"{int(n):,}-row {int(n) * len(s) / sum(s):,.0f} rows/s"
            for n, s in one["batch_s"].items()
        ]
        say(
            f"  {name:<10} {', '.join(rates)}; CPU per {max(BATCHES):,}-row batch: "
            f"API {cpu['api']:.0f} ms, PostgreSQL {cpu['postgres']:.0f} ms"
        )
    return found


def wrk_round(
    target: tuple[str, Meters], script: Path, c: int, settings: BenchSettings, label: str
) -> dict:
    """Run wrk once on a setup and charge each part's CPU to its requests."""
    url, meters = target
    before = meters.read()
    run = load.run_wrk(url, script, c, settings.pace.duration_s, settings.wrk_threads, label)
    return {**run, **charged(before, meters.read(), run["requests"])}


def measure_replicas(
    settings: BenchSettings, targets: dict[str, tuple[str, Meters]], tmp: Path, say: Say
) -> dict[str, dict[str, list]]:
    """Load every setup with one-row requests at each concurrency, interleaved."""
    from bench.suite import alternating

    script, pace = tmp / "team-predict.lua", settings.pace
    spec_ = servers.ServerSpec("x", [], {}, 0, "ours")
    script.write_text(load.lua_script(servers.body(spec_, servers.rows(1), False).decode()))
    for name, (url, _) in targets.items():
        say(f"warm-up: wrk {pace.warmup_s:.0f} s on {name}")
        load.run_wrk(url, script, 8, pace.warmup_s, settings.wrk_threads, name)
    out: dict[str, dict[str, list]] = {name: {} for name in targets}
    for repeat, order in enumerate(alternating(list(targets), settings.repeats)):
        for c, name in ((c, name) for c in CONNECTIONS for name in order):
            run = wrk_round(targets[name], script, c, settings, name)
            out[name].setdefault(str(c), []).append(run)
            cpu = run["cpu_ms_per_request"]
            say(
                f"  run {repeat + 1}/{settings.repeats} c={c:<3} {name:<9}{run['rps']:>8,.0f} req/s"
                f"  p50 {run['p50_ms']:.2f}  p99 {run['p99_ms']:.2f} ms  CPU/req api "
                f"{cpu['api']:.2f} nginx {cpu['nginx']:.2f} pg {cpu['postgres']:.2f} "
                f"wrk {cpu['wrk']:.2f} ms, busy {run['busy_percent']:.0f} %"
            )
    return out


def check_answers(targets: dict[str, tuple[str, Meters]]) -> None:
    """POST the benchmark row through every setup once: 200 and one species, or fail."""
    body, species = (
        servers.body(servers.ServerSpec("x", [], {}, 0, "ours"), servers.rows(1), False),
        {},
    )
    for name, (url, _) in targets.items():
        resp = requests.post(url, data=body, headers=JSON, timeout=30)
        if resp.status_code != 200:
            raise BenchError(f"{name}: first prediction answered {resp.status_code}: {resp.text}")
        species[name] = resp.json().get("predicted_species")
    if len(set(species.values())) > 1:
        raise BenchError(f"the setups disagree on the benchmark row: {species}")


def start_setups(
    settings: BenchSettings,
    model: dict,
    pg: tuple,
    one: Server,
    tmp: Path,
    stack: ExitStack,
    say: Say,
) -> tuple[dict[str, tuple[str, Meters]], dict[str, dict]]:
    """Start the replicas and an nginx per balanced setup; return each setup's URL and meters."""
    cluster, uri = pg
    pg_pid = postmaster_pid(cluster)
    targets, described = {}, {}
    for setup in setups(settings.workers):
        if setup.replicas == 1 and setup.workers == settings.workers:
            replicas = [one]  # the PostgreSQL log's server of the log comparison
        else:
            replicas = [
                start(
                    spec(f"{setup.name}-{i + 1}", settings, model, uri, setup.workers),
                    tmp,
                    stack,
                    say,
                )
                for i in range(setup.replicas)
            ]
        pids = [server.process.pid for server in replicas]
        if setup.balanced:
            upstreams = [f"{servers.HOST}:{server.spec.port}" for server in replicas]
            front = stack.enter_context(balancer(setup.name, upstreams, tmp))
            targets[setup.name] = (f"{front.url}/predict", Meters(pids, front.process.pid, pg_pid))
        else:
            url = replicas[0].spec.url("/predict")
            targets[setup.name] = (url, Meters(pids, None, pg_pid))
        described[setup.name] = dataclasses.asdict(setup)
    return targets, described


def describe(settings: BenchSettings) -> dict:
    """Return what the stage's section says of its own run: when, at which commit, how long."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": system.commit(PROJECT_DIR),
        "load_before": system.load_average(),
        "workers": settings.workers,
        "batches": list(BATCHES),
        "batch_rounds": 2 * settings.pace.batch_repeats,
        "connections": list(CONNECTIONS),
        "duration_s": settings.pace.duration_s,
        "repeats": settings.repeats,
        "wrk_threads": settings.wrk_threads,
        "nginx": {"version": nginx_version(), "config": "deploy/nginx/penguins.conf"},
    }


def start_logs(
    settings: BenchSettings, model: dict, uri: str, tmp: Path, stack: ExitStack, say: Say
) -> dict[str, Server]:
    """Start our API on an SQLite log and on the PostgreSQL one, with the run's workers."""
    logs = {"sqlite": ("team-sqlite", sqlite_uri(tmp / "team-predictions.db"))}
    logs["postgresql"] = ("team-pg", uri)
    return {
        log: start(spec(name, settings, model, log_uri, settings.workers), tmp, stack, say)
        for log, (name, log_uri) in logs.items()
    }


def measure(
    settings: BenchSettings, model: dict, tmp: Path, figures: dict, say: Say, required=False
) -> None:
    """Run the team stage into ``figures["team"]``, or record why it cannot run here.

    ``required`` (the stage run alone): a missing PostgreSQL or nginx fails the run instead.
    """
    reason = missing()
    if reason is not None:
        if required:
            raise BenchError(f"the team stage cannot run: {reason}")
        figures["team"] = {"skipped": reason}
        say(f"team stage skipped: {reason}")
        return
    say("team deployment: PostgreSQL log and replicas behind nginx")
    team = figures["team"] = describe(settings)
    with ExitStack() as stack:
        cluster, uri = pg = stack.enter_context(postgres(say))
        team["postgres"] = {"version": postgres_version(cluster), "durability": durability(cluster)}
        logs = start_logs(settings, model, uri, tmp, stack, say)
        team["logs"] = measure_logs(logs, team["batch_rounds"], pg, say)
        targets, team["setups"] = start_setups(
            settings, model, pg, logs["postgresql"], tmp, stack, say
        )
        check_answers(targets)
        for name, runs in measure_replicas(settings, targets, tmp, say).items():
            team["setups"][name]["load"] = runs
    team["load_after"] = system.load_average()
