"""The real API on a PostgreSQL prediction log: records, feedback, an outage, a stop.

``python ml_serving.py`` (gunicorn, gevent workers) serves the session store's
champion with ``PREDICTION_LOG_URI=postgresql://...`` on a real server. The database
is stopped under it (503 with Retry-After, never 500; /health says why, without the
password) and started again (it answers by itself); a SIGTERM under batch load
loses nothing it answered.
"""

from __future__ import annotations

import signal
import time

import requests

from tests.integration.serving.test_batch_durability import (
    BEFORE_STOP,
    STOP_SECONDS,
    WORKERS,
    BatchLoad,
    batch_bodies,
)
from tests.support.postgres import PASSWORD
from tests.support.predlog import logged_ids, logged_row
from tests.support.samples import GENTOO, SAMPLE

TIMEOUT = 10
BATCH = {"samples": [SAMPLE, GENTOO] * 50}
ROUTES = (
    ("/predict", SAMPLE),
    ("/predict/batch", BATCH),
)


def wait_for_health(url: str, status: int, timeout: float = 30.0) -> requests.Response:
    """Poll /health until it answers ``status`` (or the time is up); return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        resp = requests.get(f"{url}/health", timeout=TIMEOUT)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def predicted_ids(resp: requests.Response) -> list[str]:
    """Return the prediction ids of a 200 answer of /predict or /predict/batch."""
    body = resp.json()
    return [p["prediction_id"] for p in body.get("predictions", [body])]


def feedback_total(server) -> float:
    """Return ml_feedback_total summed over every label set: labels counted by their first."""
    return sum(v for (name, _), v in server.metrics().items() if name == "ml_feedback_total")


def test_the_api_logs_to_postgresql_answers_503_while_it_is_down_and_recovers(
    serve, trained_store, own_postgres
):
    log_uri = own_postgres.create_database("predictions")
    env = {"MLFLOW_TRACKING_URI": trained_store.tracking_uri, "PREDICTION_LOG_URI": log_uri}
    server = serve(env, workers=WORKERS)
    server.wait_ready()
    server.process.wait_for_log("serving penguins-classifier", WORKERS)

    answered: list[str] = []
    for path, body in ROUTES:
        resp = requests.post(f"{server.url}{path}", json=body, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        answered += predicted_ids(resp)
    assert len(answered) == 1 + len(BATCH["samples"])
    row = logged_row(log_uri, answered[0])
    assert (row["model_version"], row["bill_length_mm"], row["sex_encoded"]) == ("1", 39.1, 1)

    # Feedback on new connections, so both workers take some: each at once, on any worker.
    for pid in answered[:20]:
        resp = requests.post(
            f"{server.url}/feedback",
            json={"prediction_id": pid, "actual_species": "Adelie"},
            timeout=TIMEOUT,
        )
        assert resp.status_code == 200, resp.text
    again = requests.post(
        f"{server.url}/feedback",
        json={"prediction_id": answered[0], "actual_species": "Chinstrap"},
        timeout=TIMEOUT,
    )
    assert again.status_code == 200 and again.json()["correct"] is False
    assert logged_row(log_uri, answered[0])["actual_species"] == "Chinstrap"
    assert feedback_total(server) == 20, "each labelled prediction counted once, by its first"

    own_postgres.stop()
    try:
        for path, body in [*ROUTES, *ROUTES]:  # the first finds its connection cut, then refused
            resp = requests.post(f"{server.url}{path}", json=body, timeout=TIMEOUT)
            assert resp.status_code == 503, resp.text
            assert resp.headers["Retry-After"] and "cannot be written" in resp.json()["error"]
            assert PASSWORD not in resp.text
        resp = requests.post(
            f"{server.url}/feedback",
            json={"prediction_id": answered[1], "actual_species": "Adelie"},
            timeout=TIMEOUT,
        )
        assert resp.status_code == 503 and resp.headers["Retry-After"], resp.text
        health = wait_for_health(server.url, 503)
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        reason = health.json()["reason"]
        assert "cannot be written" in reason and "penguins:***@" in reason
        assert PASSWORD not in health.text
    finally:
        own_postgres.start()

    assert wait_for_health(server.url, 200).status_code == 200  # by itself: the probe found it
    for path, body in ROUTES:
        resp = requests.post(f"{server.url}{path}", json=body, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        answered += predicted_ids(resp)
    resp = requests.post(
        f"{server.url}/feedback",
        json={"prediction_id": answered[1], "actual_species": "Adelie"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200 and resp.json()["correct"] is True  # an Adelie: SAMPLE
    assert logged_row(log_uri, answered[1])["actual_species"] == "Adelie"

    # Exactly what was answered is logged: a 503 recorded nothing.
    assert sorted(logged_ids(log_uri)) == sorted(answered)
    for path in ("/model/info", "/metrics", "/health"):
        assert PASSWORD not in requests.get(f"{server.url}{path}", timeout=TIMEOUT).text
    server.process.stop()
    assert PASSWORD not in server.process.output(tail=10_000_000)


def test_sigterm_under_batch_load_loses_no_answered_prediction_on_postgresql(
    serve, trained_store, postgres_log_uri, summary_line
):
    env = {
        "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
        "PREDICTION_LOG_URI": postgres_log_uri,
    }
    server = serve(env, workers=WORKERS)
    server.wait_ready()
    server.process.wait_for_log("serving penguins-classifier v1", WORKERS)

    load = BatchLoad(server.url, batch_bodies())
    try:
        load.wait_for(BEFORE_STOP, timeout=30)
        signalled = time.time()
        server.process.send(signal.SIGTERM)
        code = server.process.wait(STOP_SECONDS)
    finally:
        load.stop()

    assert code == 0, server.process.output()
    assert {s.status for s in load.sent} == {200}, "every batch answered was answered 200"
    answered = load.answered()
    across = [s for s in answered if s.started < signalled < s.ended]
    assert len(answered) >= BEFORE_STOP
    ids = [pid for s in answered for pid in s.ids]
    logged = set(logged_ids(postgres_log_uri))
    missing = [pid for pid in ids if pid not in logged]
    assert not missing, f"of {len(ids)} answered predictions, not in the log: {missing[:3]}"
    summary_line(
        f"batch SIGTERM on PostgreSQL: {len(answered)} batches ({len(ids)} predictions) "
        f"answered and logged, {len(across)} in flight at the signal"
    )
