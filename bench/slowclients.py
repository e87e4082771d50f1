"""Slow clients held open against a server while another client's one-row requests are timed.

Two kinds, as an attacker or an unlucky network sends them: connections that send
their headers one line a second and never end them, and requests whose
``Content-Length`` promises more body than ever arrives. With them open, one client
sends one-row requests one after another, each with a timeout; a server that slow
clients can stop answers few of them, or none.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from statistics import median

import requests

# Connections of each kind held open (so twice this many in all), against 2 workers.
SLOW_CLIENTS = 50
PROBES = 10
PROBE_TIMEOUT_S = 3.0


@contextmanager
def held(host: str, port: int, path: str, count: int = SLOW_CLIENTS) -> Iterator[list]:
    """Hold ``count`` trickling-header and ``count`` stalled-body connections open."""
    stop, sockets = threading.Event(), []

    def trickle(sock: socket.socket) -> None:
        """Send one more header line every second until stopped or dropped."""
        line = 0
        while not stop.wait(1.0):
            try:
                sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())
            except OSError:
                return
            line += 1

    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
    try:
        for _ in range(count):
            sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
            sock.sendall(head.encode())
            sockets.append(sock)
            threading.Thread(target=trickle, args=(sock,), daemon=True).start()
        stalled = head + "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        for _ in range(count):
            sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
            sock.sendall(stalled.encode())
            sockets.append(sock)
        time.sleep(1.0)  # let the server take them in
        yield sockets
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


def probe(url: str, body: bytes, count: int = PROBES) -> dict:
    """Send ``count`` one-row requests one after another; return how many got a 200, and when."""
    answered, seconds = 0, []
    with requests.Session() as session:
        for _ in range(count):
            started = time.perf_counter()
            try:
                resp = session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=PROBE_TIMEOUT_S,
                )
            except requests.RequestException:
                continue
            if resp.status_code == 200:
                answered += 1
                seconds.append(time.perf_counter() - started)
    return {
        "sent": count,
        "answered": answered,
        "p50_ms": median(seconds) * 1000 if seconds else None,
    }


def measure(host: str, port: int, path: str, body: bytes) -> dict:
    """Return the probe's figures with the slow clients held open, and how many they were."""
    with held(host, port, path) as sockets:
        found = probe(f"http://{host}:{port}{path}", body)
    return {"slow_clients": len(sockets), **found}
