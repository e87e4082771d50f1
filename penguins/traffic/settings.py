"""The settings of one traffic run, read once: defaults, the environment, then flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from penguins.config import DEFAULT_DATA_PATH, setting

SHARES = ("batch_share", "feedback_share", "invalid_share")


def base_url(text: str) -> str:
    """Return a base URL without the trailing slash a path would double."""
    return text.rstrip("/")


@dataclass(frozen=True)
class TrafficSettings:
    """What ``python inference.py`` sends, where to, how fast, and what it writes."""

    url: str = setting(
        "http://127.0.0.1:5000",
        "base URL of the API; nothing else is contacted",
        env="API_URL",
        parse=base_url,
    )
    count: int = setting(
        200, "prediction requests to send (single or batch)", minimum=1, group="amount"
    )
    duration: float | None = setting(
        None,
        "send for this many seconds instead of --count; 0 runs until Ctrl-C",
        parse=float,
        minimum=0,
        group="amount",
    )
    rate: float = setting(
        20.0, "prediction requests per second; 0 sends as fast as the API answers", minimum=0
    )
    concurrency: int = setting(4, "requests in flight at once", minimum=1)
    batch_share: float = setting(0.2, "share of prediction requests sent to /predict/batch")
    batch_size: int = setting(
        20, "largest batch; each batch holds 2 to this many samples", minimum=2
    )
    feedback_share: float = setting(
        0.5, "share of predictions whose true species is sent to /feedback"
    )
    drift: bool = setting(
        False,
        "shift body_mass_g up 1000 g and flipper_length_mm up 20 mm "
        "(inside the bounds) so the exporter reports drift",
    )
    invalid_share: float = setting(
        0.0,
        "share of requests that are invalid (missing field, out of range, "
        "wrong type, bad JSON, not JSON, a bad sample in a batch)",
    )
    seed: int | None = setting(None, "random seed, for a repeatable run", parse=int)
    timeout: float = setting(10.0, "seconds per request")
    data: Path = setting(DEFAULT_DATA_PATH, "data the samples are drawn from", parse=Path)
    summary_json: Path | None = setting(
        None, "also write the summary as JSON to this file", parse=Path
    )
    no_progress: bool = setting(False, "no progress bar")

    def problem(self) -> str | None:
        """Return what is wrong with the combination of settings, if anything."""
        for name in SHARES:
            if not 0 <= getattr(self, name) <= 1:
                return f"--{name.replace('_', '-')} must be between 0 and 1"
        if self.timeout <= 0:
            return "--timeout must be more than 0"
        return None

    @property
    def runs_until_stopped(self) -> bool:
        """Return whether the run sends until Ctrl-C (--duration 0) rather than a fixed amount."""
        return self.duration == 0
