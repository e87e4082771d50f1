"""The settings of one API server process, read once: defaults, environment, then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from penguins.config import ServiceSettings, setting
from penguins.predlog import DEFAULT_MAX_ROWS

# A sample written out in full is about 150 bytes; 1 KiB each leaves room for
# pretty-printing and long decimals, so a full batch always fits.
BODY_BYTES_PER_SAMPLE = 1024
MIN_BODY_BYTES = 64 * 1024


def default_workers() -> int:
    """Return one worker per CPU plus one, at least 2: a worker waits on I/O part of the time."""
    return max(2, (os.cpu_count() or 1) + 1)


@dataclass(frozen=True)
class ServingSettings(ServiceSettings):
    """What ``python ml_serving.py`` and the app it serves are configured with."""

    FLAG_HELP: ClassVar[dict[str, str]] = {
        "alias": "alias to follow",
        "refresh_seconds": "how often each worker checks the alias, seconds",
    }

    # 0.0.0.0 so that Prometheus in docker-compose reaches the API through
    # host.docker.internal; --host 127.0.0.1 keeps it to this machine.
    host: str = setting("0.0.0.0", "address to listen on")
    port: int = setting(5000, "port to listen on", minimum=0)
    workers: int = setting(
        None,
        "worker processes; unset: CPUs + 1, at least 2",
        env="WEB_CONCURRENCY",
        parse=int,
        minimum=1,
        factory=default_workers,
    )
    # Each connection is a greenlet of a gevent worker (penguins.serving.worker): a slow
    # client holds a greenlet, not the worker. These bound how long one may take.
    header_seconds: int = setting(
        5,
        "seconds a request's headers may take, from the connection's start or its last answer",
        env="HEADER_TIMEOUT_SECONDS",
        flag=False,
        minimum=1,
    )
    body_seconds: int = setting(
        30,
        "seconds a request's body may take after its headers (then 408)",
        env="BODY_TIMEOUT_SECONDS",
        flag=False,
        minimum=1,
    )
    model_uri: str = setting(
        "",
        "any MLflow model URI to serve instead of models:/MODEL_NAME@MODEL_ALIAS",
        env="MODEL_URI",
    )
    max_batch_size: int = setting(
        10_000, "samples per /predict/batch request", env="MAX_BATCH_SIZE", minimum=1
    )
    max_body_bytes: int = setting(
        0,
        "request body limit in bytes (0: enough for a full batch)",
        env="MAX_BODY_BYTES",
        flag=False,
        minimum=0,
    )
    prediction_log_max_rows: int = setting(
        DEFAULT_MAX_ROWS,
        "predictions the log keeps (the newest)",
        env="PREDICTION_LOG_MAX_ROWS",
        flag=False,
        minimum=1,
    )
    access_log: bool = setting(False, "log every request to standard output")

    def problem(self) -> str | None:
        """Return what is wrong with the combination of settings, if anything."""
        if self.port > 65535:
            return "--port must be between 0 and 65535"
        return None

    @property
    def served_uri(self) -> str:
        """Return the model URI to serve: MODEL_URI, else the registered model's alias."""
        return self.model_uri or f"models:/{self.model_name}@{self.alias}"

    @property
    def body_limit(self) -> int:
        """Return the request body limit in bytes: the setting, or enough for a full batch."""
        return self.max_body_bytes or max(
            MIN_BODY_BYTES, self.max_batch_size * BODY_BYTES_PER_SAMPLE
        )
