"""A graceful stop under batch load: every prediction of every answered batch is in the log.

``python ml_serving.py`` with two workers takes a steady stream of /predict/batch
requests of 200 to 1000 real penguins from several client threads and is stopped with
SIGTERM while batches are in flight. Whatever it answered 200 must be in the log
afterwards; connections refused or reset once it stops are expected.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field

import psutil
import requests

from penguins.config import DEFAULT_DATA_PATH, sqlite_uri
from penguins.features import FEATURES, ISLAND_CODES, SEX_CODES, load_dataset
from penguins.predlog import log_path
from tests.support.predlog import logged_ids

WORKERS = 2
CLIENTS = 4  # twice the workers: a worker always has a request waiting for it
SIZES = (200, 1000)  # rows per batch, smallest and largest
BODIES = 12  # different batches the clients choose from
TIMEOUT = (2, 10)  # seconds to connect, to read an answer
BEFORE_STOP = 20  # batches answered before the server is stopped
STOP_SECONDS = 10  # a stop takes the in-flight batches' time, well below gunicorn's 30 s


def batch_bodies(seed: int = 7) -> list[bytes]:
    """Return request bodies of batches of data rows, of random sizes, names and codes mixed."""
    data = load_dataset(DEFAULT_DATA_PATH)
    islands = {code: name for name, code in ISLAND_CODES.items()}
    sexes = {code: name for name, code in SEX_CODES.items()}
    samples = []
    for i, row in enumerate(data[list(FEATURES)].itertuples(index=False)):
        sample = dict(zip(FEATURES[:4], row[:4], strict=True))
        if i % 2:
            sample |= {"island": islands[row[4]].lower(), "sex": sexes[row[5]].upper()}
        else:
            sample |= {"island_encoded": int(row[4]), "sex_encoded": int(row[5])}
        samples.append(sample)
    rng = random.Random(seed)
    return [
        json.dumps({"samples": rng.choices(samples, k=rng.randint(*SIZES))}).encode()
        for _ in range(BODIES)
    ]


@dataclass
class Sent:
    """One batch request: when it was sent and answered (wall clock), its status and ids."""

    started: float
    ended: float
    status: int
    ids: list[str] = field(default_factory=list)


class BatchLoad:
    """Clients POSTing /predict/batch back to back until stopped or until the server is gone."""

    def __init__(self, url: str, bodies: list[bytes], clients: int = CLIENTS) -> None:
        """Start the client threads."""
        self.url = f"{url}/predict/batch"
        self.bodies = bodies
        self.sent: list[Sent] = []
        self.errors: list[tuple[float, str]] = []  # when, what: connection errors
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(clients)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, seed: int) -> None:
        """Send batches until stopped; a connection error ends this client."""
        rng = random.Random(seed)
        headers = {"Content-Type": "application/json"}
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.time()  # wall clock: compared with the log's created_at
                try:
                    resp = session.post(
                        self.url, data=rng.choice(self.bodies), headers=headers, timeout=TIMEOUT
                    )
                    ended = time.time()
                    ids = []
                    if resp.status_code == 200:
                        ids = [p["prediction_id"] for p in resp.json()["predictions"]]
                except requests.RequestException as exc:
                    with self._lock:
                        self.errors.append((time.time(), repr(exc)))
                    return
                with self._lock:
                    self.sent.append(Sent(started, ended, resp.status_code, ids))

    def answered(self) -> list[Sent]:
        """Return the requests answered 200 so far."""
        with self._lock:
            return [s for s in self.sent if s.status == 200]

    def wait_for(self, n: int, timeout: float) -> None:
        """Wait until ``n`` batches are answered 200, failing after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.answered()) < n:
            assert time.monotonic() < deadline, f"fewer than {n} batches answered: {self.sent}"
            assert not self.errors, self.errors
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop sending and wait for every client thread."""
        self._stop.set()
        for thread in self._threads:
            thread.join(sum(TIMEOUT) + 5)
        assert not any(t.is_alive() for t in self._threads), "a client thread did not end"


def created_at(uri: str) -> dict[str, float]:
    """Return when the server predicted each logged prediction (its created_at), by id."""
    with contextlib.closing(sqlite3.connect(log_path(uri))) as conn:
        return dict(conn.execute("SELECT id, created_at FROM predictions"))


def test_sigterm_under_batch_load_loses_no_answered_prediction(
    serve, trained_store, tmp_path, summary_line
):
    log_uri = sqlite_uri(tmp_path / "predictions.db")
    env = {"MLFLOW_TRACKING_URI": trained_store.tracking_uri, "PREDICTION_LOG_URI": log_uri}
    server = serve(env, workers=WORKERS)
    server.wait_ready()
    server.process.wait_for_log("serving penguins-classifier v1", WORKERS)  # both workers up
    workers = psutil.Process(server.process.pid).children()
    assert len(workers) == WORKERS
    bodies = batch_bodies()

    load = BatchLoad(server.url, bodies)
    try:
        load.wait_for(BEFORE_STOP, timeout=20)
        signalled = time.time()
        server.process.send(signal.SIGTERM)
        code = server.process.wait(STOP_SECONDS)
        stop_seconds = time.time() - signalled
    finally:
        load.stop()  # the server is gone: each client ends on its next connection error

    assert code == 0, server.process.output()
    assert not [w.pid for w in workers if w.is_running()], "a worker outlived the server"
    assert {s.status for s in load.sent} == {200}, "every batch answered was answered 200"
    assert all(when >= signalled for when, _ in load.errors), load.errors  # only once stopping

    answered = load.answered()
    before = [s for s in answered if s.ended < signalled]
    across = [s for s in answered if s.started < signalled < s.ended]
    assert len(before) >= BEFORE_STOP
    assert across, "no batch was in flight at the stop: the test did not test the stop"
    ids = [pid for s in answered for pid in s.ids]
    assert len(set(ids)) == len(ids)

    logged = set(logged_ids(log_uri))
    missing = [pid for pid in ids if pid not in logged]
    assert len(missing) == 0, f"of {len(ids)} answered predictions, not in the log: {missing[:3]}"
    # Batches the server predicted after the signal: taken in before it, worked on after.
    times = created_at(log_uri)
    late = [s for s in across if times[s.ids[0]] > signalled]
    summary_line(
        f"batch SIGTERM: {len(answered)} batches ({len(ids)} predictions) answered and logged; "
        f"{len(across)} sent before the signal and answered after it, {len(late)} of them "
        f"predicted after it; {len(load.errors)} clients refused after; stop {stop_seconds:.2f}s"
    )
