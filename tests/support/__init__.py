"""What tests and benchmarks share: starting and stopping real processes, ports, binaries."""

from tests.support.processes import (
    IN_CI,
    PROJECT_DIR,
    ManagedProcess,
    free_port,
    require_binary,
    wait_for_http,
)

__all__ = [
    "IN_CI",
    "PROJECT_DIR",
    "ManagedProcess",
    "free_port",
    "require_binary",
    "wait_for_http",
]
