"""Timing loops: in-process predict_proba, and plain HTTP calls made with requests."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import pandas as pd
import requests

from penguins.fastpath import FastPredictor


class CallError(RuntimeError):
    """An HTTP call made while timing did not answer 200."""


def time_calls(
    fn: Callable[[], object], budget_s: float, min_calls: int = 5, warmup: int = 3
) -> list[float]:
    """Call ``fn`` repeatedly for about ``budget_s`` seconds; return each call's seconds."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def median_ms(samples: Iterable[float]) -> float:
    """Return the median of durations in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def inprocess(
    pipeline, frame: pd.DataFrame, sizes: Iterable[int], budget_s: float
) -> dict[str, dict[str, float]]:
    """Return the median ms per predict_proba call, pipeline on a DataFrame and fast on numpy.

    Frames and arrays are built before timing: what is measured is the model call alone.
    """
    fast = FastPredictor(pipeline)
    out: dict[str, dict[str, float]] = {"pipeline": {}, "fast": {}}
    for size in sizes:
        part = frame.head(size)
        array = part.to_numpy(dtype=float)
        out["pipeline"][str(size)] = median_ms(
            time_calls(lambda p=part: pipeline.predict_proba(p), budget_s)
        )
        out["fast"][str(size)] = median_ms(
            time_calls(lambda a=array: fast.predict_proba(a), budget_s)
        )
    return out


def post_timings(url: str, body: str, repeats: int, warmup: int = 1) -> list[float]:
    """POST a JSON body ``repeats`` times and return the seconds of each, answer parsed."""
    headers = {"Content-Type": "application/json"}
    data = body.encode()
    samples: list[float] = []
    with requests.Session() as session:
        for i in range(warmup + repeats):
            start = time.perf_counter()
            resp = session.post(url, data=data, headers=headers, timeout=120)
            if resp.status_code != 200:
                raise CallError(f"POST {url} answered {resp.status_code}: {resp.text[:300]}")
            resp.json()
            if i >= warmup:
                samples.append(time.perf_counter() - start)
    return samples


def get_timings(url: str, repeats: int, warmup: int = 2) -> list[float]:
    """GET ``url`` ``repeats`` times and return the seconds of each, body read."""
    samples: list[float] = []
    with requests.Session() as session:
        for i in range(warmup + repeats):
            start = time.perf_counter()
            resp = session.get(url, timeout=30)
            if resp.status_code != 200:
                raise CallError(f"GET {url} answered {resp.status_code}: {resp.text[:300]}")
            _ = resp.content
            if i >= warmup:
                samples.append(time.perf_counter() - start)
    return samples
