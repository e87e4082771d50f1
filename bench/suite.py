"""The benchmark run, stage by stage: training, the model in process, servers, load, batch.

The servers run side by side. Every stage visits them in turn, and the first of them
alternates between rounds, so a drift in the machine's load favours none of them: only
ratios from one such run mean anything on a shared machine.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import requests

from bench import BenchError, load, logsize, peers, profile, servers, slowclients, system, team
from bench.servers import Server, ServerSpec
from bench.settings import BenchSettings
from penguins.config import PROJECT_DIR, sqlite_uri
from tests.support.processes import ManagedProcess

Say = Callable[[str], None]
SIZES = (1, 1000, 10_000)  # rows per in-process predict_proba call
BATCH_ROWS = 10_000
SMALL_BATCH_ROWS = 1000  # the batch stage times this size beside BATCH_ROWS
BATCHES = (SMALL_BATCH_ROWS, BATCH_ROWS)
PEER_CONNECTIONS = (1, 8)  # the peers take one-row load at these concurrencies only
MODEL_DIR = "model"  # the champion's MLflow folder in the run's temporary folder, for the peers
JSON = {"Content-Type": "application/json"}


def alternating(names: Sequence[str], rounds: int) -> Iterator[list[str]]:
    """Yield the order of each round: as given, then reversed, and so on."""
    for i in range(rounds):
        yield list(reversed(names)) if i % 2 else list(names)


def timed(session: requests.Session, url: str, data: bytes | None = None) -> float:
    """GET ``url``, or POST ``data`` there; return the seconds to the answer's last byte.

    A POST's answer is then parsed as JSON, untimed: decoding it is the client's cost,
    and it would charge a server for the size of a richer answer (ours carries ids and
    probabilities: 2.9 MB for 10,000 rows, where a bare list of species is 0.1 MB).
    """
    start = time.perf_counter()
    if data is None:
        resp = session.get(url, timeout=120)
    else:
        resp = session.post(url, data=data, headers=JSON, timeout=120)
    seconds = time.perf_counter() - start  # requests has read the whole body by now
    if resp.status_code != 200:
        raise BenchError(f"{url} answered {resp.status_code}: {resp.text[:300]}")
    if data is not None:
        resp.json()
    return seconds


def interleaved(calls: dict[str, tuple[str, bytes | None]], rounds: int, warmup: int) -> dict:
    """Send each server its request ``warmup`` times, then ``rounds`` rounds in turn."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    with requests.Session() as session:
        for _ in range(warmup):
            for url, data in calls.values():
                timed(session, url, data)
        for order in alternating(list(calls), rounds):
            for name in order:
                out[name].append(timed(session, *calls[name]))
    return out


def time_training(store_dir: Path) -> tuple[float, str]:
    """Run `python modelling.py` into a new store; return its wall time and the store URI."""
    uri, started = sqlite_uri(store_dir / "mlflow.db"), time.perf_counter()
    log_path = store_dir / "modelling.log"
    with ManagedProcess.python("modelling.py", "--tracking-uri", uri, log_path=log_path) as proc:
        try:
            code = proc.wait(600)
        except subprocess.TimeoutExpired:
            raise BenchError("python modelling.py took over 600 s") from None
        if code != 0:
            raise BenchError(f"python modelling.py exited {code}:\n{proc.output(3000)}")
    return time.perf_counter() - started, uri


def champion(settings: BenchSettings, tracking_uri: str) -> dict[str, str] | None:
    """Return the champion's version and algorithm in a store, or None when it has none."""
    # Imported here: MLflow takes seconds to import, and --help should not wait for it.
    from penguins import registry

    if registry.missing_store(tracking_uri):
        return None
    try:
        client = registry.connect(tracking_uri)
        version = registry.get_alias_version(client, settings.model_name, settings.alias)
    except registry.StoreError as exc:
        raise BenchError(str(exc)) from exc
    if version is None:
        return None
    described = registry.describe_version(client, version, settings.alias)
    uri, algorithm = settings.model_uri, described.algorithm
    return {"uri": uri, "version": described.version, "algorithm": algorithm, "store": tracking_uri}


def measure_inprocess(settings: BenchSettings, tracking_uri: str, say: Say) -> dict:
    """Return the median ms per predict_proba call: the pipeline on pandas, ours on numpy.

    Frames and arrays are built before timing: what is measured is the model call alone.
    """
    import mlflow

    from penguins.serving.fastpath import FastPredictor

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    pipeline = mlflow.sklearn.load_model(settings.model_uri)
    fast, frame = FastPredictor(pipeline), servers.rows(max(SIZES))
    say(f"in-process predict_proba for {', '.join(map(str, SIZES))} rows")
    out: dict[str, dict[str, float]] = {"pipeline": {}, "fast": {}}
    for size in SIZES:
        inputs = {"pipeline": frame.head(size), "fast": frame.head(size).to_numpy(dtype=float)}
        for kind, call in (("pipeline", pipeline.predict_proba), ("fast", fast.predict_proba)):
            for _ in range(3):  # warm-up
                call(inputs[kind])
            samples, deadline = [], time.perf_counter() + settings.pace.inprocess_budget_s
            while len(samples) < 5 or time.perf_counter() < deadline:
                start = time.perf_counter()
                call(inputs[kind])
                samples.append(time.perf_counter() - start)
            out[kind][str(size)] = statistics.median(samples) * 1000
    return out


def spec_of(name: str, settings: BenchSettings, tracking_uri: str, tmp: Path) -> ServerSpec:
    """Return the spec of a server by its name: ours, baseline, mlflow, mlflow-1w or a peer."""
    if name in peers.PEERS:
        return peers.spec(name, tmp / MODEL_DIR, settings.workers, tmp)
    if name.startswith("mlflow"):
        workers = 1 if name == "mlflow-1w" else settings.workers
        return servers.mlflow_serve(name, tracking_uri, settings.model_uri, workers)
    return servers.ours(
        name,
        settings.baseline if name == "baseline" else PROJECT_DIR,
        settings.workers,
        MLFLOW_TRACKING_URI=tracking_uri,
        MODEL_NAME=settings.model_name,
        MODEL_ALIAS=settings.alias,
        PREDICTION_LOG_URI=sqlite_uri(tmp / f"predictions-{name}.db"),
    )


def install_peers(settings: BenchSettings, figures: dict, say: Say) -> None:
    """Make each peer's virtualenv of the run ready, or record why it is skipped."""
    wanted = [name for name in settings.server_names if name in peers.PEERS]
    if wanted:
        say(f"peers: {', '.join(wanted)}, each from its pinned virtualenv in {peers.VENVS_DIR}")
        ready, skipped = peers.prepare(wanted, say=say)
        figures["peers"].update(ready)
        figures["skipped"].update(skipped)


def give_peers_the_model(model: dict, tmp: Path, figures: dict, say: Say) -> None:
    """Download the champion's MLflow folder once for the peers; skip them all if it fails."""
    if not figures["peers"]:
        return
    try:
        local = peers.download_model(model["uri"], model["store"], tmp / MODEL_DIR)
    except peers.PeerSkipped as exc:
        for name in figures["peers"]:
            figures["skipped"][name] = f"no model folder: {exc}"
        figures["peers"] = {}
        return
    say(f"the peers read the champion's MLflow folder {local}")


def start_servers(
    settings: BenchSettings, tracking_uri: str, tmp: Path, stack: ExitStack, figures: dict, say: Say
) -> dict[str, Server]:
    """Start each server in turn, idle before the next, so that no start-up overlaps another.

    A skipped peer is not started; a peer that does not start is skipped, saying why.
    """
    started = {}
    for name in (n for n in settings.server_names if n not in figures["skipped"]):
        say(f"starting {name}")
        spec = spec_of(name, settings, tracking_uri, tmp)
        try:
            server = started[name] = stack.enter_context(servers.running(spec, tmp))
        except BenchError as exc:
            if name not in peers.PEERS:
                raise
            figures["skipped"][name] = f"did not start: {peers.last_lines(str(exc))}"
            say(f"  {name} skipped: {figures['skipped'][name]}")
            continue
        settled = servers.settle(server)
        figures["servers"][name] = {"cold_start_s": server.cold_start_s, "settled_s": settled}
        say(f"  first 200 after {server.cold_start_s:.2f} s, all idle after {settled:.2f} s")
    return started


def check_same_answer(started: dict[str, Server]) -> None:
    """POST the benchmark row to each server once: 200 and the same species, or fail."""
    species = {}
    for name, server in started.items():
        spec = server.spec
        one = servers.body(spec, servers.rows(1), batch=False)
        resp = requests.post(spec.url(spec.routes[1]), data=one, headers=JSON, timeout=30)
        if resp.status_code != 200:
            raise BenchError(f"{name}: first prediction answered {resp.status_code}: {resp.text}")
        species[name] = servers.species_of(spec, resp.json())
    if len(set(species.values())) > 1:
        raise BenchError(f"the servers disagree on the benchmark row: {species}")


def measure_load(
    settings: BenchSettings, started: dict[str, Server], tmp: Path, figures: dict, say: Say
) -> dict[str, Path]:
    """Run wrk on every server and concurrency, interleaved; return each one's wrk script."""
    scripts, pace = {}, settings.pace
    for name, server in started.items():
        scripts[name] = tmp / f"{name}.lua"
        one = servers.body(server.spec, servers.rows(1), batch=False).decode()
        scripts[name].write_text(load.lua_script(one))
        say(f"warm-up: wrk {pace.warmup_s:.0f} s on {name}")
        url = server.spec.url(server.spec.routes[1])
        load.run_wrk(url, scripts[name], 8, pace.warmup_s, settings.wrk_threads, name)
    for repeat, order in enumerate(alternating(list(started), settings.repeats)):
        for c, name in ((c, name) for c in settings.connections for name in order):
            if name in peers.PEERS and c not in PEER_CONNECTIONS:
                continue
            server, before = started[name], servers.usage(started[name])["cpu_s"]
            url = server.spec.url(server.spec.routes[1])
            run = load.run_wrk(url, scripts[name], c, pace.duration_s, settings.wrk_threads, name)
            cpu_s = servers.usage(server)["cpu_s"] - before
            run["cpu_ms_per_request"] = cpu_s / run["requests"] * 1000
            figures["servers"][name].setdefault("load", {}).setdefault(str(c), []).append(run)
            say(
                f"  run {repeat + 1}/{settings.repeats} c={c:<3} {name:<10}"
                f"{run['rps']:>9,.0f} req/s  p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms"
            )
    return scripts


def measure_requests(settings: BenchSettings, started: dict[str, Server], figures: dict, say: Say):
    """Time memory, both batch sizes on every server and ``/metrics`` on ours, interleaved."""
    # Warm (after the one-row runs), then again after the big batches, which grow the
    # workers and copy pages they shared with the master.
    for name, server in started.items():
        figures["servers"][name]["memory"] = servers.usage(server)
    pace, frames = settings.pace, {n: servers.rows(n) for n in BATCHES}
    batches = {
        f"{name} {n}": (s.spec.url(s.spec.routes[2]), servers.body(s.spec, frames[n], True))
        for name, s in started.items()
        for n in BATCHES
    }
    sizes = " and ".join(f"{n:,}" for n in BATCHES)
    say(f"batch: {sizes} rows x {pace.batch_repeats} to each server, interleaved")
    seconds = interleaved(batches, pace.batch_repeats, warmup=1)
    for name, server in started.items():
        figures["servers"][name]["batch_s"] = seconds[f"{name} {BATCH_ROWS}"]
        figures["servers"][name]["small_batch_s"] = seconds[f"{name} {SMALL_BATCH_ROWS}"]
        figures["servers"][name]["memory_after_batch"] = servers.usage(server)
    scrapes = {n: (s.spec.url("/metrics"), None) for n, s in started.items() if s.spec.ours}
    say(f"/metrics: {pace.scrapes} scrapes of {', '.join(scrapes) or 'no server'}")
    for name, seconds in interleaved(scrapes, pace.scrapes, warmup=2).items():
        figures["servers"][name]["metrics_scrape_ms"] = [s * 1000 for s in seconds]


def measure_slow_clients(started: dict[str, Server], figures: dict, say: Say) -> None:
    """Time one-row requests to each server while slow clients hold connections open."""
    n = slowclients.SLOW_CLIENTS
    figures["slow_clients"] = {
        "per_kind": n,
        "probes": slowclients.PROBES,
        "timeout_s": slowclients.PROBE_TIMEOUT_S,
    }
    say(f"slow clients: {n} trickling headers and {n} stalled bodies held open on each server")
    for name, server in started.items():
        spec = server.spec
        one = servers.body(spec, servers.rows(1), batch=False)
        found = slowclients.measure(servers.HOST, spec.port, spec.routes[1], one)
        figures["servers"][name]["slow_clients"] = found
        p50 = found["p50_ms"]
        say(
            f"  {name:<10} {found['answered']}/{found['sent']} answered"
            + (f", p50 {p50:.1f} ms" if p50 is not None else "")
        )


def profiled(server: Server, seconds: float, what: str, drive: Callable[[float], str], say: Say):
    """Sample the server's workers with py-spy while ``drive`` loads it; {} if unable.

    ``drive(seconds)`` sends traffic for at least that long and describes its rate.
    """
    out = server.process.log_path.with_name(f"profile-{drive.__name__}.txt")
    say(f"profile: py-spy on {server.spec.name} for {seconds:.0f} s, {what}")
    command = profile.record_command(server.process.pid, seconds, out)
    recorder = ManagedProcess(command, out.with_suffix(".log"), name="py-spy")
    try:
        rate = drive(seconds + 1)
        code = recorder.wait(seconds + 30)
        failure = None if code == 0 and out.is_file() else f"exited {code}: {recorder.output(300)}"
    except subprocess.TimeoutExpired:
        failure = "did not finish"
    finally:
        recorder.stop()
    if failure:
        say(f"py-spy {failure.strip()}; no profile")
        return {}
    found = profile.breakdown(profile.parse_folded(out.read_text()))
    return {**found, "what": what, "rate": rate, "seconds": seconds}


def measure_profiles(settings: BenchSettings, server: Server, script: Path, say: Say) -> dict:
    """Profile one-row /predict under wrk and the big /predict/batch under repeated POSTs."""
    if profile.py_spy() is None:
        say("py-spy is not installed (pip install -r requirements-dev.txt): no profile")
        return {}
    spec, seconds = server.spec, settings.pace.profile_s
    batch_url, batch_body = (
        spec.url(spec.routes[2]),
        servers.body(spec, servers.rows(BATCH_ROWS), True),
    )

    def one_row(seconds: float) -> str:
        """Send one-row requests from one connection; return their rate."""
        return f"{load.run_wrk(spec.url(spec.routes[1]), script, 1, seconds)['rps']:,.0f} req/s"

    def batch(seconds: float) -> str:
        """POST the big batch again and again; return the rows per second."""
        posts, deadline = [], time.perf_counter() + seconds
        with requests.Session() as session:
            while time.perf_counter() < deadline:
                posts.append(timed(session, batch_url, batch_body))
        return f"{BATCH_ROWS * len(posts) / sum(posts):,.0f} rows/s"

    what = f"{BATCH_ROWS:,}-row /predict/batch, one POST at a time"
    return {
        "predict": profiled(server, seconds, "one-row /predict, wrk at 1 connection", one_row, say),
        "batch": profiled(server, seconds, what, batch, say),
    }


def start_on_logs(
    settings: BenchSettings, store: str, tmp: Path, stack: ExitStack, say: Say
) -> dict[int, Server]:
    """Start our API on the log of each size in turn, by the log's rows."""
    started = {}
    for rows in settings.pace.log_sizes:
        spec = spec_of("ours", settings, store, tmp)
        env = {**spec.env, "PREDICTION_LOG_URI": sqlite_uri(logsize.log_file(tmp, rows))}
        spec = dataclasses.replace(spec, name=logsize.server_name(rows), env=env)
        say(f"starting {spec.name}")
        started[rows] = stack.enter_context(servers.running(spec, tmp))
        servers.settle(started[rows])
    return started


def measure_log_sizes(settings: BenchSettings, model: dict, tmp: Path, figures: dict, say: Say):
    """Time 1,000- and 10,000-row batches on our API over logs of each size, interleaved.

    A stage of its own, after the others: each log's API runs for it alone, so the one-row
    load of the main stage is in none of the logs, and ``ours@0`` starts empty. Each log's
    rows are counted just before and just after the batches, pruning included.
    """
    sizes, rounds = settings.pace.log_sizes, 2 * settings.pace.batch_repeats
    if not sizes or "ours" not in settings.servers:
        return
    say(f"log sizes: prefilling logs of {', '.join(map(logsize.size_label, sizes))} rows")
    built = logsize.build(tmp, sizes, model["algorithm"], model["version"], say)
    with ExitStack() as stack:
        started = start_on_logs(settings, model["store"], tmp, stack, say)
        logs, calls = {}, {}
        for rows, server in started.items():
            logs[server.spec.name] = {
                "rows": rows,
                "prefill_s": built[rows][1] if rows in built else None,
                "rows_before": logsize.row_count(logsize.log_file(tmp, rows)),
            }
            for n in logsize.BATCHES:
                body = servers.body(server.spec, servers.rows(n), True)
                calls[f"{server.spec.name} {n}"] = (server.spec.url(server.spec.routes[2]), body)
        say(f"batches of {' and '.join(f'{n:,}' for n in logsize.BATCHES)} rows x {rounds} each")
        seconds = interleaved(calls, rounds, warmup=1)
        for rows, server in started.items():
            found = logs[server.spec.name]
            found["rows_after"] = logsize.row_count(logsize.log_file(tmp, rows))
            found["batch_s"] = {str(n): seconds[f"{server.spec.name} {n}"] for n in logsize.BATCHES}
            say(f"  {server.spec.name:<10} {logsize.describe(found)}")
    figures["log_sizes"] = {"batches": list(logsize.BATCHES), "logs": logs}


def measure_all(
    settings: BenchSettings,
    model: dict | None,
    tmp: Path,
    stack: ExitStack,
    figures: dict,
    say: Say,
) -> None:
    """Run the stages that need the temporary folder; servers go on ``stack``."""
    install_peers(settings, figures, say)
    say("timing `python modelling.py` into a temporary store")
    figures["training_s"], trained = time_training(tmp)
    say(f"  {figures['training_s']:.1f} s")
    figures["model"] = model = model or champion(settings, trained)
    if model is None:
        raise BenchError(f"modelling.py left no {settings.model_uri} in {trained}")
    figures["inprocess_ms"] = measure_inprocess(settings, model["store"], say)
    give_peers_the_model(model, tmp, figures, say)
    started = start_servers(settings, model["store"], tmp, stack, figures, say)
    check_same_answer(started)
    scripts = measure_load(settings, started, tmp, figures, say)
    measure_requests(settings, started, figures, say)
    measure_slow_clients(started, figures, say)
    if "ours" in started and settings.pace.profile_s > 0:
        figures["profile"] = measure_profiles(settings, started["ours"], scripts["ours"], say)
        if "baseline" in started:  # the same profiles of the other checkout: before and after
            baseline = started["baseline"]
            figures["profile_baseline"] = measure_profiles(
                settings, baseline, scripts["baseline"], say
            )
    measure_log_sizes(settings, model, tmp, figures, say)
    if not settings.no_team:
        team.measure(settings, model, tmp, figures, say)
    figures["load_after"] = system.load_average()


def measure_team_only(
    settings: BenchSettings, model: dict | None, tmp: Path, figures: dict, say: Say
) -> None:
    """Run the team stage alone, on the store's champion or one trained for the run."""
    if model is None:
        say("training a champion into a temporary store (--train)")
        model = champion(settings, time_training(tmp)[1])
        if model is None:
            raise BenchError(f"modelling.py left no {settings.model_uri} in its store")
    figures["model"] = model
    team.measure(settings, model, tmp, figures, say, required=True)
    figures["load_after"] = system.load_average()


def run(settings: BenchSettings, say: Say = print) -> dict:
    """Run every stage and return the figures; servers are stopped whatever happens."""
    shown = ("repeats", "connections", "workers", "wrk_threads")
    figures: dict = {
        **system.describe(PROJECT_DIR, settings.baseline),
        "settings": {key: getattr(settings, key) for key in shown},
        "sizes": list(SIZES),
        "batch_rows": BATCH_ROWS,
        "small_batch_rows": SMALL_BATCH_ROWS,
        "servers": {},
        "peers": {},
        "skipped": {},
    }
    figures["settings"]["duration_s"] = settings.pace.duration_s
    load.wrk_binary()
    model = None if settings.train else champion(settings, settings.tracking_uri)
    if model is None and not settings.train:
        raise BenchError(
            f"no {settings.model_uri} in {settings.tracking_uri}: run `python modelling.py` "
            "first, or pass --train to benchmark a champion trained into a temporary store"
        )
    with tempfile.TemporaryDirectory(prefix="penguins-bench-") as tmp:
        try:
            if settings.team_only:
                measure_team_only(settings, model, Path(tmp), figures, say)
            else:
                with ExitStack() as stack:
                    measure_all(settings, model, Path(tmp), stack, figures, say)
        except BenchError as exc:
            kept = Path(tempfile.mkdtemp(prefix="penguins-bench-logs-"))
            for log_file in Path(tmp).glob("*.log"):
                shutil.copy(log_file, kept / log_file.name)
            raise BenchError(f"{exc}\n(the servers' logs are kept in {kept})") from exc
    # With every server stopped: what the rest of the machine was doing at the end.
    figures["cpu_busy_after"] = system.cpu_busy()
    return figures
