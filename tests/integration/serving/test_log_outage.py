"""A prediction log on a disk that fills up: honest 503s, an unhealthy /health, recovery.

The log lives on a small tmpfs of its own (mounting one needs root, as in CI), which
the test fills with a file and then empties again.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from penguins.config import sqlite_uri
from penguins.predlog import LogUnavailable, Predictions, open_log
from penguins.serving.ids import new_ids
from tests.support import IN_CI
from tests.support.predlog import logged_ids
from tests.support.samples import GENTOO, SAMPLE

TIMEOUT = 10
BATCH = {"samples": [SAMPLE, GENTOO] * 250}


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """Mount a 2 MiB tmpfs for the test and unmount it afterwards."""
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte with one file; return it."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def wait_for_health(url: str, status: int, timeout: float = 20.0) -> requests.Response:
    """Poll /health until it answers ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        resp = requests.get(f"{url}/health", timeout=TIMEOUT)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_a_full_disk_gives_503_then_the_server_recovers_by_itself(serve, trained_store, small_disk):
    log_uri = sqlite_uri(small_disk / "predictions.db")
    server = serve(
        {"MLFLOW_TRACKING_URI": trained_store.tracking_uri, "PREDICTION_LOG_URI": log_uri}
    )
    server.wait_ready()
    server.process.wait_for_log("serving penguins-classifier", 2)  # both workers booted
    answered = [requests.post(f"{server.url}/predict", json=SAMPLE, timeout=TIMEOUT).json()]
    filler = fill(small_disk)
    statuses = set()
    for _ in range(20):  # until the log's free pages run out too
        resp = requests.post(f"{server.url}/predict/batch", json=BATCH, timeout=TIMEOUT)
        statuses.add(resp.status_code)
        if resp.status_code == 200:
            answered += resp.json()["predictions"]
        else:
            assert resp.status_code == 503, resp.text
            assert resp.headers["Retry-After"] and "cannot be written" in resp.json()["error"]
            break
    assert 503 in statuses and 500 not in statuses
    health = wait_for_health(server.url, 503)
    assert health.status_code == 503 and "cannot be written" in health.json()["reason"]
    filler.unlink()  # room again: nothing but the log's own probe finds it out
    assert wait_for_health(server.url, 200).status_code == 200
    resp = requests.post(f"{server.url}/predict/batch", json=BATCH, timeout=TIMEOUT)
    assert resp.status_code == 200
    answered += resp.json()["predictions"]
    assert {a["prediction_id"] for a in answered} <= set(logged_ids(log_uri))


def test_a_current_log_opens_on_a_full_disk_and_says_it_cannot_be_written(small_disk):
    uri = sqlite_uri(small_disk / "predictions.db")
    open_log(uri).close()
    filler = fill(small_disk)
    log = open_log(uri)  # a worker starting now must start
    assert "cannot be written" in log.probe()  # "disk I/O error": no room for the WAL index
    rows = [(39.1, 18.7, 181.0, 3750.0, 0, 1)] * 5000
    batch = Predictions(new_ids(5000), 1.0, "svm", "1", rows, ["Adelie"] * 5000, [0.9] * 5000)
    with pytest.raises(LogUnavailable, match="cannot be written"):
        log.record_predictions(batch)
    filler.unlink()
    assert log.probe() is None
    log.record_predictions(batch)
    assert len(logged_ids(uri)) == 5000
