"""A stand-in for the API on a local port, in a thread: answers as the routes do, counts them.

It checks just enough to answer each kind of request with the status the real API gives
(415 for a body that is not JSON, 400 for broken JSON, 422 for a missing, mistyped or
out-of-bounds value); ``mode`` makes it misbehave on purpose.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from penguins.features import BOUNDS, NUMERIC_FEATURES

MODES = ("contract", "malformed", "refuse_all", "drop_feedback", "unhealthy")


class FakeApi:
    """A threaded HTTP server that predicts ``species`` for every sample."""

    def __init__(self, species: str = "Adelie", mode: str = "contract") -> None:
        """Listen on a free port of 127.0.0.1 until ``close``."""
        assert mode in MODES, mode
        self.species, self.mode = species, mode
        self.answered: Counter = Counter()  # "METHOD /path STATUS" -> count
        self.feedback: list[str] = []  # actual species received, in order
        self.ids: set[str] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def answer(self, method: str, path: str, headers, body: bytes) -> tuple[int, object] | None:
        """Return (status, JSON payload) for one request, or None to drop the connection."""
        if path == "/health":
            return (503, {"status": "loading"}) if self.mode == "unhealthy" else (200, {})
        if self.mode == "refuse_all":
            return 422, {"error": "refused"}
        if path == "/feedback":
            return self._feedback(json.loads(body))
        return self._predict(path, headers, body)

    def _predict(self, path: str, headers, body: bytes) -> tuple[int, object]:
        """Answer /predict or /predict/batch."""
        if headers.get("Content-Type") != "application/json":
            return 415, {"error": "not JSON"}
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            return 400, {"error": "bad JSON"}
        samples = payload["samples"] if path == "/predict/batch" else [payload]
        if not all(_valid(sample) for sample in samples):
            return 422, {"error": "invalid sample"}
        if self.mode == "malformed":
            return 200, {"prediction": self.species}
        predictions = [self._prediction() for _ in samples]
        return 200, {"predictions": predictions} if path == "/predict/batch" else predictions[0]

    def _prediction(self) -> dict:
        """Return one prediction with a fresh id."""
        prediction_id = str(uuid.uuid4())
        with self.lock:
            self.ids.add(prediction_id)
        return {"prediction_id": prediction_id, "predicted_species": self.species}

    def _feedback(self, payload: dict) -> tuple[int, object] | None:
        """Record the true species of a known prediction."""
        if self.mode == "drop_feedback":
            return None
        with self.lock:
            if payload["prediction_id"] not in self.ids:
                return 404, {"error": "unknown id"}
            self.feedback.append(payload["actual_species"])
        return 200, {"recorded": True}


def _valid(sample: dict) -> bool:
    """Return whether a sample has every numeric feature as a number inside its bounds."""
    for name in NUMERIC_FEATURES:
        value = sample.get(name)
        if not isinstance(value, int | float) or not BOUNDS[name].contains(value):
            return False
    has_codes = "island_encoded" in sample or "island" in sample
    return has_codes and ("sex_encoded" in sample or "sex" in sample)


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    """Return a request handler class that asks ``api`` for each answer."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the traffic's sessions expect
        disable_nagle_algorithm = True  # else each answer waits out a delayed ACK (40 ms)

        def do_GET(self) -> None:
            """Answer a GET."""
            self._respond("GET", b"")

        def do_POST(self) -> None:
            """Answer a POST."""
            self._respond("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _respond(self, method: str, body: bytes) -> None:
            """Send the answer ``api`` gives, or close the connection without one."""
            answer = api.answer(method, self.path, self.headers, body)
            if answer is None:
                self.close_connection = True
                return
            status, payload = answer
            data = json.dumps(payload).encode()
            with api.lock:
                api.answered[f"{method} {self.path} {status}"] += 1
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler
