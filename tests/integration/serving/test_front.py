"""The front as attackers and unlucky networks meet it: slow clients, huge chunked bodies,
broken framing, Ctrl-C. Real ``python ml_serving.py`` processes, raw sockets where the
bytes matter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from penguins.config import sqlite_uri
from tests.integration.serving.conftest import ApiServer, running
from tests.integration.serving.test_serving_server import TIMEOUT, WORKERS, Load
from tests.support.predlog import logged_ids
from tests.support.samples import SAMPLE

SLOW_CLIENTS = 40  # of each kind, against 2 workers


@pytest.fixture(scope="module")
def front(trained_store, tmp_path_factory) -> Iterator[ApiServer]:
    """Return one server as users start it, with short limits so that tests see them act."""
    root = tmp_path_factory.mktemp("front")
    env = {
        "MLFLOW_TRACKING_URI": trained_store.tracking_uri,
        "PREDICTION_LOG_URI": sqlite_uri(root / "predictions.db"),
        "HEADER_TIMEOUT_SECONDS": "2",
        "BODY_TIMEOUT_SECONDS": "2",
    }
    with running(root, env, workers=WORKERS) as server:
        yield server


def address(server: ApiServer) -> tuple[str, int]:
    """Return the host and port of a server."""
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(server: ApiServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; return the status, headers and body answered."""
    with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP answer with a Content-Length from a socket (its peer may then close)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {raw!r}"
        raw += chunk
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers["Content-Length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


class SlowClients:
    """Connections that send headers a line every second, and bodies that never arrive."""

    def __init__(self, server: ApiServer, count: int) -> None:
        """Open ``count`` connections of each kind."""
        self._stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.closed_by_server = 0
        self._lock = threading.Lock()
        for _ in range(count):
            sock = socket.create_connection(address(server), timeout=TIMEOUT)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: slow\r\n")
            self.sockets.append(sock)
            threading.Thread(target=self._trickle, args=(sock,), daemon=True).start()
        for _ in range(count):
            sock = socket.create_connection(address(server), timeout=TIMEOUT)
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100000\r\n\r\n{"bill_length_mm": '
            )
            self.sockets.append(sock)

    def _trickle(self, sock: socket.socket) -> None:
        """Send one more header line every second until stopped or dropped."""
        line = 0
        while not self._stop.wait(1.0):
            try:
                sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())
            except OSError:
                with self._lock:
                    self.closed_by_server += 1
                return
            line += 1

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self._stop.set()
        for sock in self.sockets:
            sock.close()


def test_dozens_of_slow_clients_do_not_stop_other_clients(front):
    slow = SlowClients(front, SLOW_CLIENTS)
    try:
        with requests.Session() as session:
            for _ in range(30):
                resp = session.post(f"{front.url}/predict", json=SAMPLE, timeout=TIMEOUT)
                assert resp.status_code == 200, resp.text
            resp = session.post(
                f"{front.url}/predict/batch", json={"samples": [SAMPLE] * 1000}, timeout=TIMEOUT
            )
            assert resp.status_code == 200 and resp.json()["count"] == 1000
    finally:
        slow.close()


def test_headers_that_trickle_in_are_cut_off_at_the_limit(front):
    with socket.create_connection(address(front), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
        closed = False
        for line in range(TIMEOUT * 2):  # a line every half second, for longer than the limit
            try:
                sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())
                sock.settimeout(0.5)
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed, "the server kept a connection whose headers never ended"


def test_a_body_that_never_arrives_is_answered_408_in_json(front):
    with socket.create_connection(address(front), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"bill_length_mm": 39.1'
        )
        status, headers, body = read_answer(sock)
    assert status == 408
    assert headers["Content-Type"] == "application/json"
    assert "did not arrive within 2 s" in json.loads(body)["error"]


def chunked(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    """Yield ``data`` in pieces, so that requests sends it with chunked encoding."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"samples": [SAMPLE] * 80_000}).encode(),  # ~11 MB of valid samples
        json.dumps(SAMPLE).encode() + b" " * (11 * 1024 * 1024),  # valid JSON, then spaces
    ],
    ids=["a batch too big", "valid JSON then padding"],
)
def test_a_chunked_body_over_the_limit_is_413(front, body):
    resp = requests.post(
        f"{front.url}/predict/batch",
        data=chunked(body),
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"] == "body is larger than the limit of 10240000 bytes"


def test_a_chunked_body_within_the_limit_is_answered(front):
    body = json.dumps({"samples": [SAMPLE] * 2000}).encode()
    resp = requests.post(
        f"{front.url}/predict/batch",
        data=chunked(body, 4096),
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200 and resp.json()["count"] == 2000


HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (HEAD + b"Content-Length: abc\r\n\r\n{}", 400),
        (HEAD + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (HEAD + b"".join(b"X-H-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
        (HEAD + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
    ],
    ids=[
        "length not a number",
        "length and chunked",
        "too many headers",
        "header too long",
        "bad request line",
    ],
)
def test_broken_framing_is_answered_in_json(front, data, status):
    got, headers, body = exchange(front, data)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]


def test_ctrl_c_stops_gracefully_losing_nothing_answered(serve, trained_store, tmp_path):
    log_uri = sqlite_uri(tmp_path / "predictions.db")
    env = {"MLFLOW_TRACKING_URI": trained_store.tracking_uri, "PREDICTION_LOG_URI": log_uri}
    server = serve(env, workers=WORKERS)
    server.wait_ready()
    load = Load(server.url, threads=3)
    load.wait_until(lambda: len(load.answers) >= 60, 30, "traffic before Ctrl-C")
    os.killpg(server.process.pid, signal.SIGINT)  # as a terminal does: to the whole group
    assert server.process.wait(60) == 0
    load.stop()
    statuses = {status for status, _, _ in load.answers}
    assert statuses == {200}, f"answers during the stop: {statuses}"
    # Connections made after the stop are refused, or reset if the kernel had queued them
    # for a worker that stopped accepting: unanswered, so nothing answered is at stake.
    answered = [pid for status, _, pid in load.answers if status == 200]
    logged = set(logged_ids(log_uri))
    assert all(pid in logged for pid in answered)
    output = server.process.output(tail=10_000_000)
    assert "Error handling request" not in output and "Internal Server Error" not in output
