"""Send the planned requests from a pool of threads and collect what came back."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
import requests
from tqdm import tqdm

from penguins.traffic.inputs import ApiRequest
from penguins.traffic.planner import RequestPlanner
from penguins.traffic.settings import TrafficSettings
from penguins.traffic.summary import Stats, traffic_mode


class ApiUnreachable(RuntimeError):
    """The API gave no answer at all to the first request."""


@dataclass(frozen=True)
class Outcome:
    """The summary of a run, and whether it ended early."""

    summary: dict
    interrupted: bool = False
    until_stopped: bool = False  # the run was meant to last until Ctrl-C

    @property
    def exit_code(self) -> int:
        """Return 1 when requests got no answer, 130 when cut short by Ctrl-C, else 0."""
        if self.summary["transport_errors"]:
            return 1
        if self.interrupted and not self.until_stopped:
            return 130
        return 0


class TrafficRunner:
    """Send planned requests from a pool of threads, each with its own HTTP session."""

    def __init__(self, settings: TrafficSettings, planner: RequestPlanner) -> None:
        """Send to ``settings.url`` what ``planner`` decides."""
        self.settings = settings
        self.planner = planner
        self.stats = Stats()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        # Guards the list of sessions, which worker threads add to; only the sending loop
        # uses the planner, so its random generator is never shared between threads.
        self._sessions_lock = threading.Lock()

    def _session(self) -> requests.Session:
        """Return this thread's session."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _send(self, method: str, path: str, **kwargs) -> requests.Response | None:
        """Send one request and count its answer; return None when none came."""
        start = time.perf_counter()
        try:
            response = self._session().request(
                method, self.settings.url + path, timeout=self.settings.timeout, **kwargs
            )
        except requests.RequestException as exc:
            self.stats.failure(exc)
            return None
        self.stats.answer(method, path, response.status_code, time.perf_counter() - start)
        return response

    def check_reachable(self) -> str | None:
        """Ask /health once; return a reason when the API cannot be reached at all."""
        url = self.settings.url
        try:
            response = self._session().get(url + "/health", timeout=self.settings.timeout)
        except requests.RequestException as exc:
            return (
                f"cannot reach the API at {url}: {type(exc).__name__}; "
                "start it with make serve (python ml_serving.py) or check --url"
            )
        self.stats.answer("GET", "/health", response.status_code, response.elapsed.total_seconds())
        if response.status_code != 200:
            tqdm.write(
                f"inference: warning: {url}/health answered {response.status_code}; sending anyway",
                file=sys.stderr,
            )
        return None

    def run_one(self, request: ApiRequest) -> None:
        """Send one planned request, check its predictions, and send the chosen feedback."""
        headers = {"Content-Type": request.content_type}
        response = self._send("POST", request.path, data=request.body, headers=headers)
        status = None if response is None else response.status_code
        self.stats.sent(request.kind, status, request.expected_status)
        if status != 200 or not request.truths:
            return
        answers = answers_of(request, response)
        if answers is None:
            self.stats.malformed()
            return
        self.stats.checked([species for species, _ in answers], request.truths)
        planned = zip(answers, request.truths, request.feedback, strict=True)
        for (_, prediction_id), truth, send in planned:
            if send:
                payload = {"prediction_id": prediction_id, "actual_species": truth}
                self._send("POST", "/feedback", json=payload)

    def run(self, progress: tqdm) -> bool:
        """Send until the count or duration is reached; return False when interrupted."""
        slots = threading.BoundedSemaphore(self.settings.concurrency)

        def done(future: Future) -> None:
            """Free the request's slot, count it, and report a failure of this code."""
            slots.release()
            progress.update(1)
            if future.exception() is not None:  # a bug here, not an API answer: say so
                tqdm.write(f"inference: request failed: {future.exception()!r}", file=sys.stderr)

        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="traffic") as pool:
            try:
                for _ in self._paced():
                    slots.acquire()
                    pool.submit(self.run_one, self.planner.next()).add_done_callback(done)
            except KeyboardInterrupt:
                tqdm.write(
                    "inference: interrupted; waiting for requests in flight", file=sys.stderr
                )
                return False
        return True

    def _paced(self) -> Iterator[int]:
        """Yield request numbers at --rate: --count of them, or until --duration has passed."""
        settings = self.settings
        start = time.monotonic()
        i = 0
        while settings.duration is not None or i < settings.count:
            if settings.duration and time.monotonic() - start >= settings.duration:
                return
            if settings.rate > 0:
                time.sleep(max(0.0, start + i / settings.rate - time.monotonic()))
            yield i
            i += 1

    def close(self) -> None:
        """Close every thread's session."""
        for session in self._sessions:
            session.close()


def answers_of(request: ApiRequest, response: requests.Response) -> list[tuple[str, str]] | None:
    """Return (predicted species, prediction id) per sample of a 200 answer; None if malformed."""
    try:
        body = response.json()
        predictions = body["predictions"] if request.kind == "batch" else [body]
        answers = [(p["predicted_species"], p["prediction_id"]) for p in predictions]
    except (ValueError, KeyError, TypeError):
        return None
    return answers if len(answers) == len(request.truths) else None


def send_traffic(settings: TrafficSettings, data: pd.DataFrame) -> Outcome:
    """Check that the API answers, send the planned traffic with a progress bar, summarise it.

    Raises ApiUnreachable when the first request gets no answer at all.
    """
    runner = TrafficRunner(settings, RequestPlanner(data, settings))
    started = time.monotonic()
    try:
        problem = runner.check_reachable()
        if problem is not None:
            raise ApiUnreachable(problem)
        total = settings.count if settings.duration is None else None
        with tqdm(total=total, unit="req", disable=settings.no_progress, desc="requests") as bar:
            completed = runner.run(bar)
    finally:
        runner.close()
    summary = runner.stats.summary(settings.url, time.monotonic() - started, traffic_mode(settings))
    return Outcome(summary, interrupted=not completed, until_stopped=settings.runs_until_stopped)
