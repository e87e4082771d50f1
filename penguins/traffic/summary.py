"""What came back: counts from every worker thread, the summary as data, and as text."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from penguins.traffic.inputs import DRIFT_SHIFT, INVALID_KINDS
from penguins.traffic.settings import TrafficSettings

PERCENTILES = (50, 95, 99)
# The settings that decide what is sent, as opposed to where to and how it is reported.
MODE_SETTINGS = (
    "drift",
    "invalid_share",
    "batch_share",
    "batch_size",
    "feedback_share",
    "rate",
    "concurrency",
    "seed",
)


def traffic_mode(settings: TrafficSettings) -> dict:
    """Return the settings that shaped the traffic, so a summary says what kind of run it was."""
    return {name: getattr(settings, name) for name in MODE_SETTINGS}


@dataclass
class Stats:
    """What came back, collected from every worker thread."""

    statuses: Counter = field(default_factory=Counter)  # (method, path, status) -> count
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    kinds: Counter = field(default_factory=Counter)  # request kind -> count
    unexpected: Counter = field(default_factory=Counter)  # invalid kind -> wrong answers
    predictions: int = 0
    correct: int = 0
    bad_answers: int = 0  # 200 answers that do not have the documented shape
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

    def sent(self, kind: str, status: int | None, expected_status: int) -> None:
        """Count one planned request of ``kind``; ``status`` is None when no answer came."""
        with self.lock:
            self.kinds[kind] += 1
            if status is not None and kind in INVALID_KINDS and status != expected_status:
                self.unexpected[kind] += 1

    def malformed(self) -> None:
        """Count a 200 answer that does not have the documented shape."""
        with self.lock:
            self.bad_answers += 1

    def checked(self, predicted: Sequence[str], truths: Sequence[str]) -> None:
        """Count answered predictions against the true species of their samples."""
        with self.lock:
            self.predictions += len(predicted)
            self.correct += sum(p == t for p, t in zip(predicted, truths, strict=True))

    def summary(self, url: str, seconds: float, mode: dict) -> dict:
        """Return the summary as plain data; ``mode`` is what traffic_mode says of the run."""
        with self.lock:
            feedback = {
                str(status): n
                for (_, path, status), n in self.statuses.items()
                if path == "/feedback"
            }
            return {
                "url": url,
                "mode": dict(mode),
                "seconds": round(seconds, 2),
                "requests_by_kind": dict(self.kinds),
                "responses_by_status": self._by_status(),
                "responses": {f"{m} {p} {s}": n for (m, p, s), n in sorted(self.statuses.items())},
                "latency": self._latency(),
                "predictions_checked": self.predictions,
                "accuracy": round(self.correct / self.predictions, 4) if self.predictions else None,
                "feedback_calls": sum(feedback.values()),
                "feedback_by_status": feedback,
                "invalid_answered_unexpectedly": dict(self.unexpected),
                "malformed_answers": self.bad_answers,
                "transport_errors": dict(self.transport_errors),
            }

    def _by_status(self) -> dict[str, int]:
        """Return answers counted by status alone, in order of status."""
        by_status: Counter = Counter()
        for (_, _, status), n in self.statuses.items():
            by_status[str(status)] += n
        return dict(sorted(by_status.items()))

    def _latency(self) -> dict[str, dict]:
        """Return the count and latency percentiles (ms) of each route, in order of route."""
        return {
            route: {
                "count": len(values),
                **{
                    f"p{q}_ms": round(float(np.percentile(values, q)) * 1000, 2)
                    for q in PERCENTILES
                },
            }
            for route, values in sorted(self.latencies.items())
        }


def format_summary(summary: dict) -> str:
    """Return the summary as text for a person, starting with an empty line."""
    kinds = Counter(summary["requests_by_kind"])
    invalid = {kind: n for kind, n in sorted(kinds.items()) if kind in INVALID_KINDS}
    detail = f" ({', '.join(f'{k} {n}' for k, n in invalid.items())})" if invalid else ""
    statuses = ", ".join(f"{s}: {n}" for s, n in summary["responses_by_status"].items())
    lines = [
        "",
        f"Sent {kinds.total()} prediction requests to {summary['url']} in "
        f"{summary['seconds']} s: {kinds['single']} single, {kinds['batch']} batch, "
        f"{sum(invalid.values())} invalid{detail}",
        f"Mode: {describe_mode(summary['mode'])}",
        f"Responses by status: {statuses}",
        *(f"  {line}: {n}" for line, n in summary["responses"].items()),
        f"{'Latency (ms)':<22}{'count':>7}{'p50':>9}{'p95':>9}{'p99':>9}",
        *(_latency_line(route, row) for route, row in summary["latency"].items()),
        _accuracy_line(summary),
        f"Feedback calls: {summary['feedback_calls']}",
        *_problem_lines(summary),
    ]
    return "\n".join(lines)


def describe_mode(mode: dict) -> str:
    """Return the traffic's mode in words: drift or not, then the shares and the pace."""
    if mode["drift"]:
        shifts = ", ".join(f"{name} +{shift:g}" for name, shift in DRIFT_SHIFT.items())
        drift = f"drift ({shifts})"
    else:
        drift = "no drift"
    rate = "as fast as answered" if mode["rate"] == 0 else f"{mode['rate']:g} requests/s"
    seed = "random" if mode["seed"] is None else mode["seed"]
    return (
        f"{drift}, invalid share {mode['invalid_share']:g}, "
        f"batch share {mode['batch_share']:g} (2 to {mode['batch_size']} samples), "
        f"feedback share {mode['feedback_share']:g}, {rate}, "
        f"concurrency {mode['concurrency']}, seed {seed}"
    )


def _latency_line(route: str, row: dict) -> str:
    """Return one route's line of the latency table."""
    return (
        f"  {route:<20}{row['count']:>7}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}"
        f"{row['p99_ms']:>9.1f}"
    )


def _accuracy_line(summary: dict) -> str:
    """Return the line on accuracy against the true species."""
    if summary["accuracy"] is None:
        return "Accuracy against the true species: no predictions answered"
    return (
        f"Accuracy against the true species: {summary['accuracy']:.3f} "
        f"({summary['predictions_checked']} predictions)"
    )


def _problem_lines(summary: dict) -> list[str]:
    """Return a line for each kind of answer that should not have happened."""
    lines = []
    if summary["invalid_answered_unexpectedly"]:
        lines.append(
            "Invalid requests answered unlike the contract: "
            f"{summary['invalid_answered_unexpectedly']}"
        )
    if summary["malformed_answers"]:
        lines.append(f"200 answers not shaped as the contract says: {summary['malformed_answers']}")
    if summary["transport_errors"]:
        lines.append(f"Requests with no answer: {summary['transport_errors']}")
    return lines
