"""Starting, timing, measuring and stopping a real server process, as the bench does."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from bench import BenchError, servers
from bench.servers import ServerSpec
from tests.support.processes import free_port


def test_a_server_is_timed_measured_and_stopped(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "health").write_text("ok")
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    spec = ServerSpec("fake", [*argv, "--directory", str(root)], {}, port, "ours")
    with servers.running(spec, tmp_path) as server:
        assert 0 < server.cold_start_s < 60
        assert servers.settle(server) >= 0
        used = servers.usage(server)
        assert used["processes"] == 1
        assert 0 < used["pss_mb"] <= used["rss_mb"] and used["uss_mb"] > 0
        assert used["cpu_s"] > 0
        pid = server.process.pid
    assert not server.process.alive()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert (tmp_path / "tmp-fake").is_dir() and (tmp_path / "fake.log").is_file()


def test_a_server_that_exits_fails_the_run_at_once_with_its_log(tmp_path: Path):
    script = "import sys; print('no champion in the store'); sys.exit(3)"
    spec = ServerSpec("broken", [sys.executable, "-c", script], {}, free_port(), "ours")
    started = time.monotonic()
    with (
        pytest.raises(BenchError, match="no champion in the store"),
        servers.running(spec, tmp_path),
    ):
        pass
    assert time.monotonic() - started < 30
