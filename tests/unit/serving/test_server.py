"""The gunicorn side of the server, without starting it: options and the metrics directory."""

from __future__ import annotations

import os

from penguins.config import from_env
from penguins.serving.server import gunicorn_options, prepare_metrics_dir, remove_metrics_dir
from penguins.serving.settings import ServingSettings


def options(**overrides) -> dict:
    """Return the gunicorn options of settings from the defaults and ``overrides``."""
    return gunicorn_options(from_env(ServingSettings, environ={}, **overrides))


def test_each_server_gets_its_own_control_socket_setting_and_metrics_dir(monkeypatch, tmp_path):
    base = {"host": "127.0.0.1", "port": 5000, "workers": 2, "access_log": False}
    single = options(**base)
    assert single["control_socket_disable"] is True
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old")
    (given / "keep.txt").write_text("not ours to delete")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert prepare_metrics_dir() == (given, False)
    assert sorted(p.name for p in given.iterdir()) == ["keep.txt"]


def test_options_follow_the_settings():
    opts = options(host="127.0.0.1", port=5123, workers=3, header_seconds=7, access_log=True)
    assert opts["bind"] == "127.0.0.1:5123"
    assert opts["workers"] == 3
    assert opts["worker_class"] == "penguins.serving.worker.ApiWorker"
    assert opts["keepalive"] == 7  # gevent's worker: the total time for the next headers
    assert opts["accesslog"] == "-"
    assert options(access_log=False)["accesslog"] is None


def test_without_a_directory_the_server_makes_one_of_its_own(monkeypatch):
    # Empty counts as unset; monkeypatch then restores the variable the server sets.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    path, ours = prepare_metrics_dir()
    try:
        assert ours is True
        assert path.is_dir() and not any(path.iterdir())
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    finally:
        remove_metrics_dir(path)
    assert not path.exists()
