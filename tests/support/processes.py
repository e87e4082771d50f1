"""Start, wait for, read and stop real processes: servers, Prometheus, scripts.

Tests and benchmarks use this one helper, so every process is started the same way
(its own log file, a clean multiprocess-metrics environment) and stopped the same
way (SIGTERM, then SIGKILL after a grace period), whatever happens in between.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests

PROJECT_DIR = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# A server started by a test makes its own metrics directory; one inherited from the
# test run's environment would mix two servers' values.
_DROPPED_ENV = ("PROMETHEUS_MULTIPROC_DIR",)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing_binary(name: str) -> str | None:
    """Return why a binary cannot be used (not installed), or None when it is on PATH."""
    if shutil.which(name) is None:
        return f"{name} is not installed (apt-get install the package that provides it)"
    return None


def wait_for_http(
    url: str,
    timeout: float = 60.0,
    ok: Sequence[int] = (200,),
    alive: Callable[[], bool] | None = None,
    interval: float = 0.2,
) -> requests.Response:
    """Poll a URL every ``interval`` seconds until it answers one of ``ok``, or raise TimeoutError.

    ``alive`` is asked between polls; when it says the process behind the URL has
    ended, waiting stops at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = requests.get(url, timeout=2)
            if resp.status_code in ok:
                return resp
            last = resp.status_code
        except requests.RequestException as exc:
            last = exc
        if alive is not None and not alive():
            raise TimeoutError(f"{url}: the process ended before answering (last: {last})")
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer {tuple(ok)} within {timeout}s (last: {last})")


class ManagedProcess:
    """One process started from ``argv`` with its output in ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = PROJECT_DIR,
        name: str | None = None,
    ) -> None:
        """Start the process now; ``env`` is added over this process's environment."""
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[1] if len(self.argv) > 1 else self.argv[0]).name
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        base = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env={**base, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the test run does not reach it first
        )

    @classmethod
    def python(cls, script: str, *args: str, **kwargs) -> ManagedProcess:
        """Start one of the project's scripts with this interpreter."""
        return cls([sys.executable, str(PROJECT_DIR / script), *args], **kwargs)

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Return whether the process is still running."""
        return self.proc.poll() is None

    def output(self, tail: int = 20_000) -> str:
        """Return the end of what the process printed so far (also after it stopped)."""
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def wait_for_http(
        self, url: str, timeout: float = 90.0, ok: Sequence[int] = (200,)
    ) -> requests.Response:
        """Wait until ``url`` answers one of ``ok``; fail with the process's log if not."""
        try:
            return wait_for_http(url, timeout=timeout, ok=ok, alive=self.alive)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.output()}") from None

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 60.0) -> None:
        """Wait until ``text`` appears ``count`` times in the output (once per worker, say)."""
        deadline = time.monotonic() + timeout
        while self.output(tail=10_000_000).count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen {count} times:\n{self.output()}")
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; return its exit code."""
        return self.proc.wait(timeout)

    def send(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal to the process, if it is still running."""
        if self.alive():
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0, signum: int = signal.SIGTERM) -> int:
        """Stop with ``signum`` (SIGKILL after ``timeout``), close the log; return the exit code.

        Children it left behind in its session (workers of a killed master) are killed too.
        """
        if self.alive():
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ManagedProcess:
        """Use the process as a context: it is stopped on leaving."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the process."""
        self.stop()


def require_binary(name: str) -> str:
    """Return the path of a binary; skip the test locally, fail it under CI, when missing."""
    import pytest

    reason = missing_binary(name)
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return shutil.which(name) or name
