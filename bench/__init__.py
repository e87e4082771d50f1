"""Benchmark harness: our API against `mlflow models serve`, MLServer and BentoML (and an older
checkout of ours)."""


class BenchError(RuntimeError):
    """The benchmark cannot run or a stage failed; the message says which and why."""
