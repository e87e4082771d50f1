"""The settings of one exporter process, read once: defaults, the environment, then flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from penguins.config import PROJECT_DIR, ServiceSettings, setting
from penguins.monitoring.drift import DEFAULT_BINS, PSI_DRIFT

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class MonitorSettings(ServiceSettings):
    """What ``python prometheus_exporter.py`` listens on, reads, and how it judges the model."""

    FLAG_HELP: ClassVar[dict[str, str]] = {
        "alias": "alias of the version whose training data is the drift reference",
        "refresh_seconds": "look the alias up at most this often, seconds",
    }

    # 0.0.0.0 so that Prometheus in docker-compose reaches the exporter through
    # host.docker.internal; --host 127.0.0.1 keeps it to this machine.
    host: str = setting("0.0.0.0", "address to listen on", env="PROMETHEUS_HOST")
    port: int = setting(8000, "port to listen on", env="PROMETHEUS_PORT", minimum=1)
    # Accuracy over the newest 500 labels moves within minutes at demo traffic yet is
    # steady enough (one wrong label moves it by 0.2 points) to alert on.
    accuracy_window: int = setting(
        500,
        "newest labelled predictions live accuracy covers",
        env="LIVE_ACCURACY_WINDOW",
        minimum=1,
    )
    # Below 20 labels one mistake moves accuracy by 5 points or more: no value then.
    accuracy_min_labels: int = setting(
        20,
        "fewer labels than this in the window: no live accuracy",
        env="LIVE_ACCURACY_MIN_LABELS",
        minimum=1,
    )
    drift_window: int = setting(
        1000, "newest predictions whose inputs drift covers", env="DRIFT_WINDOW", minimum=1
    )
    # Sampling noise alone moves PSI. Measured over 2000 windows of in-distribution
    # inputs (rows of the data set with measurement noise) against the champion's
    # training split: at 200 inputs the mean is 0.05-0.06 per numeric feature and 27%
    # of windows have a feature over the 0.1 watch line; at 400, 0.8%; at 500, none
    # (highest 0.097). Below 500 inputs PSI would cry "watch" on noise, so no value.
    drift_min_samples: int = setting(
        500, "fewer inputs than this: no drift values", env="DRIFT_MIN_SAMPLES", minimum=1
    )
    drift_threshold: float = setting(
        PSI_DRIFT, "PSI above which ml_drift_detected is 1", env="DRIFT_PSI_THRESHOLD"
    )
    # The 0.1 and 0.2 readings of PSI, and the noise measured above, hold for 10 bins:
    # a knob for tests, not a flag.
    drift_bins: int = setting(DEFAULT_BINS, "bins per numeric feature", flag=False, minimum=2)
    disk_path: str = setting(
        str(PROJECT_DIR),
        "path whose file system system_disk_usage_percent reports",
        env="DISK_USAGE_PATH",
    )
    log_level: str = setting(
        "INFO", "log level: DEBUG, INFO, WARNING or ERROR", env="LOG_LEVEL", choices=LOG_LEVELS
    )

    def problem(self) -> str | None:
        """Return what is wrong beyond each setting's own checks (a range, a strict bound)."""
        if self.port > 65535:
            return "--port must be between 1 and 65535"
        if self.drift_threshold <= 0:
            return "--drift-threshold must be above 0"
        return None
