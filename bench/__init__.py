"""Benchmark harness: our API against `mlflow models serve` on the same champion."""
