"""The API's gunicorn worker and master, in parts: JSON framing errors, body deadlines, Ctrl-C."""

from __future__ import annotations

import json
import socket

import gevent
import pytest
from werkzeug.exceptions import RequestTimeout

from penguins.serving.server import GracefulArbiter
from penguins.serving.worker import BodyDeadline, write_json_error


def test_a_framing_error_is_written_as_json_and_closes_the_connection():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, 431, "Request Header Fields Too Large", "Error parsing headers")
        ours.shutdown(socket.SHUT_WR)
        raw = b"".join(iter(lambda: theirs.recv(4096), b""))
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert {"Connection: close", "Content-Type: application/json"} <= set(lines[1:])
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {"error": "Request Header Fields Too Large: Error parsing headers"}


def test_a_framing_error_message_is_kept_short_and_escaped():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, 400, "Bad Request", "Invalid Request Line '\"<x>" + "a" * 500)
        ours.shutdown(socket.SHUT_WR)
        raw = b"".join(iter(lambda: theirs.recv(4096), b""))
    error = json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]
    assert error.startswith("Bad Request: Invalid Request Line '\"<x>") and len(error) == 200


class Body:
    """A request body whose reads take ``delay`` seconds each (cooperatively)."""

    def __init__(self, delay: float) -> None:
        """Answer every read after ``delay`` seconds."""
        self.delay = delay

    def read(self, size=None):
        """Return some bytes, late."""
        gevent.sleep(self.delay)
        return b"x" * (size or 3)

    def readline(self, size=None):
        """Return a line, late."""
        gevent.sleep(self.delay)
        return b""


def test_a_body_read_in_time_is_passed_through():
    body = BodyDeadline(Body(0.0), seconds=5)
    assert body.read(4) == b"xxxx" and body.read() == b"xxx"
    assert list(body) == []


def test_a_body_read_that_waits_past_the_deadline_is_a_408():
    body = BodyDeadline(Body(10.0), seconds=0.2)
    with pytest.raises(RequestTimeout, match="did not arrive within 0.2 s"):
        body.read(100)


def test_a_body_past_its_deadline_is_not_read_again():
    inner = Body(0.0)
    body = BodyDeadline(inner, seconds=0.05)
    gevent.sleep(0.1)
    inner.read = None  # a read would fail differently
    with pytest.raises(RequestTimeout):
        body.read(1)


def test_ctrl_c_in_the_master_stops_as_gracefully_as_sigterm():
    arbiter = GracefulArbiter.__new__(GracefulArbiter)  # only the signal handler is exercised
    stops = []
    arbiter.stop = lambda graceful=True: stops.append(graceful)
    with pytest.raises(StopIteration):  # gunicorn's loop then halts: a graceful stop
        arbiter.handle_int()
    assert stops == []  # gunicorn's own handler stops at once first: stop(graceful=False)
