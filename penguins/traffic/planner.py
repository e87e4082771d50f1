"""What each next request is: valid or not, single or batch, codes or names, feedback or not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from penguins.traffic.inputs import (
    INVALID_KINDS,
    ApiRequest,
    invalid_request,
    sample_inputs,
    valid_request,
)
from penguins.traffic.settings import TrafficSettings

# Share of samples sent with island and sex names rather than codes; both are valid.
NAMES_SHARE = 0.3
# Samples are drawn this many at a time: one pandas call per request would dominate.
SAMPLE_CHUNK = 1024


class RequestPlanner:
    """Decide, from one seeded generator, what each next request is."""

    def __init__(self, data: pd.DataFrame, settings: TrafficSettings) -> None:
        """Draw from ``data`` with the shares of ``settings``."""
        self.data = data
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        self._buffer = data.iloc[:0]

    def _rows(self, n: int) -> pd.DataFrame:
        """Return the next ``n`` noisy rows."""
        if len(self._buffer) < n:
            fresh = sample_inputs(
                self.data, max(n, SAMPLE_CHUNK), self.rng, drift=self.settings.drift
            )
            self._buffer = pd.concat([self._buffer, fresh], ignore_index=True)
        rows, self._buffer = self._buffer.iloc[:n], self._buffer.iloc[n:]
        return rows

    def next(self) -> ApiRequest:
        """Return the next request to send."""
        if self.rng.random() < self.settings.invalid_share:
            kind = str(self.rng.choice(list(INVALID_KINDS)))
            return invalid_request(kind, self._rows(1).iloc[0], self.rng)
        size = 1
        if self.rng.random() < self.settings.batch_share:
            size = int(self.rng.integers(2, self.settings.batch_size + 1))
        rows = self._rows(size)
        request = valid_request(rows, list(self.rng.random(size) < NAMES_SHARE))
        # Drawn here, not when the answer comes: answers arrive in any order from several
        # threads, and a draw then would change every later request of a seeded run.
        feedback = self.rng.random(size) < self.settings.feedback_share
        return dataclasses.replace(request, feedback=tuple(bool(f) for f in feedback))
