"""Realistic traffic for the API: what to send (inputs, planner), sending it (runner), the summary.

``python inference.py`` runs it with :class:`~penguins.traffic.settings.TrafficSettings`.
The inputs are also what tests and benchmarks fill a prediction log with, so they are
importable from here.
"""

from penguins.traffic.inputs import (
    DRIFT_SHIFT,
    INVALID_KINDS,
    NOISE_SCALE,
    ApiRequest,
    invalid_request,
    sample_inputs,
    to_sample,
    valid_request,
)

__all__ = [
    "DRIFT_SHIFT",
    "INVALID_KINDS",
    "NOISE_SCALE",
    "ApiRequest",
    "invalid_request",
    "sample_inputs",
    "to_sample",
    "valid_request",
]
