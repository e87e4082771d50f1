"""Send realistic traffic to the penguins API and summarise what came back.

Run from the project root: ``python inference.py`` sends 200 requests to
http://127.0.0.1:5000 (single and batch predictions drawn from data/penguins.csv
with noise, feedback for half of the predictions) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from tqdm import tqdm

from penguins.config import DEFAULT_DATA_PATH, env_str
from penguins.features import DataError, load_dataset
from penguins.traffic import (
    INVALID_KINDS,
    ApiRequest,
    invalid_request,
    sample_inputs,
    valid_request,
)

DEFAULT_URL = "http://127.0.0.1:5000"
# Share of samples sent with island and sex names rather than codes; both are valid.
NAMES_SHARE = 0.3
# Samples are drawn this many at a time: one pandas call per request would dominate.
SAMPLE_CHUNK = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=env_str("API_URL", DEFAULT_URL),
        help="base URL of the API (env API_URL); nothing else is contacted",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--count", type=int, default=200, help="prediction requests to send (single or batch)"
    )
    amount.add_argument(
        "--duration",
        type=float,
        help="send for this many seconds instead of --count; 0 runs until Ctrl-C",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="prediction requests per second; 0 sends as fast as the API answers",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument(
        "--batch-share",
        type=float,
        default=0.2,
        help="share of prediction requests sent to /predict/batch",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=20,
        help="largest batch; each batch holds 2 to this many samples",
    )
    parser.add_argument(
        "--feedback-share",
        type=float,
        default=0.5,
        help="share of predictions whose true species is sent to /feedback",
    )
    parser.add_argument(
        "--drift",
        action="store_true",
        help="shift body_mass_g up 1000 g and flipper_length_mm up 20 mm "
        "(inside the bounds) so the exporter reports drift",
    )
    parser.add_argument(
        "--invalid-share",
        type=float,
        default=0.0,
        help="share of requests that are invalid (missing field, out of range, "
        "wrong type, bad JSON, not JSON, a bad sample in a batch)",
    )
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA_PATH, help="data the samples are drawn from"
    )
    parser.add_argument(
        "--summary-json", type=Path, help="also write the summary as JSON to this file"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)  # fmt: skip
    for name in ("batch_share", "feedback_share", "invalid_share"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.count < 1 or args.concurrency < 1 or args.batch_size < 2:
        parser.error("--count and --concurrency must be at least 1, --batch-size at least 2")
    if args.rate < 0 or (args.duration is not None and args.duration < 0) or args.timeout <= 0:
        parser.error("--rate and --duration must be >= 0, --timeout > 0")
    args.url = args.url.rstrip("/")
    return args


class RequestPlanner:
    """Decide, from one seeded generator, what each next request is."""

    def __init__(self, data: pd.DataFrame, args: argparse.Namespace) -> None:
        """Draw from ``data`` with the shares of ``args``."""
        self.data = data
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self._buffer = data.iloc[:0]

    def _rows(self, n: int) -> pd.DataFrame:
        """Return the next ``n`` noisy rows."""
        if len(self._buffer) < n:
            fresh = sample_inputs(self.data, max(n, SAMPLE_CHUNK), self.rng, drift=self.args.drift)
            self._buffer = pd.concat([self._buffer, fresh], ignore_index=True)
        rows, self._buffer = self._buffer.iloc[:n], self._buffer.iloc[n:]
        return rows

    def next(self) -> ApiRequest:
        """Return the next request to send."""
        if self.rng.random() < self.args.invalid_share:
            kind = str(self.rng.choice(list(INVALID_KINDS)))
            return invalid_request(kind, self._rows(1).iloc[0], self.rng)
        size = 1
        if self.rng.random() < self.args.batch_share:
            size = int(self.rng.integers(2, self.args.batch_size + 1))
        rows = self._rows(size)
        return valid_request(rows, list(self.rng.random(size) < NAMES_SHARE))

    def wants_feedback(self) -> bool:
        """Return whether to send feedback for one prediction."""
        return bool(self.rng.random() < self.args.feedback_share)


@dataclass
class Stats:
    """What came back, collected from every worker thread."""

    statuses: Counter = field(default_factory=Counter)  # (method, path, status) -> count
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    kinds: Counter = field(default_factory=Counter)  # request kind -> count
    unexpected: Counter = field(default_factory=Counter)  # invalid kind -> wrong answers
    predictions: int = 0
    correct: int = 0
    bad_answers: int = 0  # 200 answers that do not have the contract's shape
    transport_errors: Counter = field(default_factory=Counter)  # exception name -> count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one HTTP answer."""
        with self.lock:
            self.statuses[(method, path, status)] += 1
            self.latencies[f"{method} {path}"].append(seconds)

    def failure(self, exc: Exception) -> None:
        """Count a request that got no HTTP answer."""
        with self.lock:
            self.transport_errors[type(exc).__name__] += 1

    def summary(self, url: str, seconds: float) -> dict:
        """Return the summary as plain data."""
        with self.lock:
            by_status: Counter = Counter()
            for (_, _, status), n in self.statuses.items():
                by_status[str(status)] += n
            latency = {
                route: {
                    "count": len(values),
                    **{
                        f"p{q}_ms": round(float(np.percentile(values, q)) * 1000, 2)
                        for q in (50, 95, 99)
                    },
                }
                for route, values in sorted(self.latencies.items())
            }
            feedback = {
                str(status): n
                for (_, path, status), n in self.statuses.items()
                if path == "/feedback"
            }
            return {
                "url": url,
                "seconds": round(seconds, 2),
                "requests_by_kind": dict(self.kinds),
                "responses_by_status": dict(sorted(by_status.items())),
                "responses": {f"{m} {p} {s}": n for (m, p, s), n in sorted(self.statuses.items())},
                "latency": latency,
                "predictions_checked": self.predictions,
                "accuracy": round(self.correct / self.predictions, 4) if self.predictions else None,
                "feedback_calls": sum(feedback.values()),
                "feedback_by_status": feedback,
                "invalid_answered_unexpectedly": dict(self.unexpected),
                "malformed_answers": self.bad_answers,
                "transport_errors": dict(self.transport_errors),
            }


class TrafficRunner:
    """Send planned requests from a pool of threads, each with its own HTTP session."""

    def __init__(self, args: argparse.Namespace, planner: RequestPlanner) -> None:
        """Send to ``args.url`` what ``planner`` decides."""
        self.args = args
        self.planner = planner
        self.stats = Stats()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._plan_lock = threading.Lock()

    def _session(self) -> requests.Session:
        """Return this thread's session."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._plan_lock:
                self._sessions.append(session)
        return session

    def _send(self, method: str, path: str, **kwargs) -> requests.Response | None:
        """Send one request and count its answer; return None when none came."""
        start = time.perf_counter()
        try:
            response = self._session().request(
                method, self.args.url + path, timeout=self.args.timeout, **kwargs
            )
        except requests.RequestException as exc:
            self.stats.failure(exc)
            return None
        self.stats.answer(method, path, response.status_code, time.perf_counter() - start)
        return response

    def check_reachable(self) -> str | None:
        """Ask /health once; return a reason when the API cannot be reached at all."""
        try:
            response = self._session().get(self.args.url + "/health", timeout=self.args.timeout)
        except requests.RequestException as exc:
            return f"cannot reach the API at {self.args.url}: {type(exc).__name__}"
        self.stats.answer("GET", "/health", response.status_code, response.elapsed.total_seconds())
        if response.status_code != 200:
            tqdm.write(
                f"inference: warning: {self.args.url}/health answered {response.status_code}; "
                "sending anyway",
                file=sys.stderr,
            )
        return None

    def run_one(self, request: ApiRequest) -> None:
        """Send one planned request, check its predictions, and send the chosen feedback."""
        response = self._send(
            "POST", request.path, data=request.body, headers={"Content-Type": request.content_type}
        )
        with self.stats.lock:
            self.stats.kinds[request.kind] += 1
            if (
                response is not None
                and request.kind in INVALID_KINDS
                and response.status_code != request.expected_status
            ):
                self.stats.unexpected[request.kind] += 1
        if response is None or response.status_code != 200 or not request.truths:
            return
        try:
            body = response.json()
            predictions = body["predictions"] if request.kind == "batch" else [body]
            answers = [(p["predicted_species"], p["prediction_id"]) for p in predictions]
            if len(answers) != len(request.truths):
                raise ValueError(f"{len(answers)} predictions for {len(request.truths)} samples")
        except (ValueError, KeyError, TypeError):
            with self.stats.lock:
                self.stats.bad_answers += 1
            return
        with self._plan_lock:
            feedback = [self.planner.wants_feedback() for _ in answers]
        with self.stats.lock:
            self.stats.predictions += len(answers)
            self.stats.correct += sum(
                a[0] == t for a, t in zip(answers, request.truths, strict=True)
            )
        for (_, prediction_id), truth, wanted in zip(
            answers, request.truths, feedback, strict=True
        ):
            if wanted:
                payload = {"prediction_id": prediction_id, "actual_species": truth}
                self._send("POST", "/feedback", json=payload)

    def run(self, progress: tqdm) -> bool:
        """Send until the count or duration is reached; return False when interrupted."""
        args = self.args
        slots = threading.BoundedSemaphore(args.concurrency)
        start = time.monotonic()
        interrupted = False

        def done(future) -> None:
            slots.release()
            progress.update(1)
            if future.exception() is not None:  # a bug here, not an API answer: say so
                tqdm.write(f"inference: request failed: {future.exception()!r}", file=sys.stderr)

        with ThreadPoolExecutor(args.concurrency, thread_name_prefix="traffic") as pool:
            try:
                for i in self._indices():
                    if args.duration and time.monotonic() - start >= args.duration:
                        break
                    if args.rate > 0:
                        time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                    slots.acquire()
                    with self._plan_lock:
                        request = self.planner.next()
                    future = pool.submit(self.run_one, request)
                    future.add_done_callback(done)
            except KeyboardInterrupt:
                interrupted = True
                tqdm.write(
                    "inference: interrupted; waiting for requests in flight", file=sys.stderr
                )
        return not interrupted

    def _indices(self):
        """Yield request numbers: --count of them, or without end for --duration."""
        i = 0
        while self.args.duration is not None or i < self.args.count:
            yield i
            i += 1

    def close(self) -> None:
        """Close every thread's session."""
        for session in self._sessions:
            session.close()


def print_summary(summary: dict) -> None:
    """Print the summary for a person."""
    kinds = Counter(summary["requests_by_kind"])
    invalid = {kind: n for kind, n in sorted(kinds.items()) if kind in INVALID_KINDS}
    print(
        f"\nSent {kinds.total()} prediction requests to {summary['url']} in "
        f"{summary['seconds']} s: {kinds['single']} single, {kinds['batch']} batch, "
        f"{sum(invalid.values())} invalid"
        + (f" ({', '.join(f'{k} {n}' for k, n in invalid.items())})" if invalid else "")
    )
    print("Responses by status: "
          + ", ".join(f"{s}: {n}" for s, n in summary["responses_by_status"].items()))  # fmt: skip
    for line, n in summary["responses"].items():
        print(f"  {line}: {n}")
    print(f"{'Latency (ms)':<22}{'count':>7}{'p50':>9}{'p95':>9}{'p99':>9}")
    for route, row in summary["latency"].items():
        print(f"  {route:<20}{row['count']:>7}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}"
              f"{row['p99_ms']:>9.1f}")  # fmt: skip
    if summary["accuracy"] is None:
        print("Accuracy against the true species: no predictions answered")
    else:
        print(f"Accuracy against the true species: {summary['accuracy']:.3f} "
              f"({summary['predictions_checked']} predictions)")  # fmt: skip
    print(f"Feedback calls: {summary['feedback_calls']}")
    if summary["invalid_answered_unexpectedly"]:
        print(f"Invalid requests answered unlike the contract: "
              f"{summary['invalid_answered_unexpectedly']}")  # fmt: skip
    if summary["malformed_answers"]:
        print(f"200 answers not shaped as the contract says: {summary['malformed_answers']}")
    if summary["transport_errors"]:
        print(f"Requests with no answer: {summary['transport_errors']}")


def main(argv: list[str] | None = None) -> int:
    """Send the traffic, print the summary, and return the exit code."""
    args = parse_args(argv)
    try:
        data = load_dataset(args.data)
    except DataError as exc:
        print(f"inference: {exc}", file=sys.stderr)
        return 2
    runner = TrafficRunner(args, RequestPlanner(data, args))
    started = time.monotonic()
    try:
        problem = runner.check_reachable()
        if problem is not None:
            print(f"inference: {problem}", file=sys.stderr)
            return 1
        total = args.count if args.duration is None else None
        with tqdm(total=total, unit="req", disable=args.no_progress, desc="requests") as progress:
            completed = runner.run(progress)
    finally:
        runner.close()
    summary = runner.stats.summary(args.url, time.monotonic() - started)
    print_summary(summary)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
    if summary["transport_errors"]:
        print("inference: some requests got no answer from the API", file=sys.stderr)
        return 1
    if not completed:
        return 0 if args.duration == 0 else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
