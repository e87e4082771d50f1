"""The ``ml_serving.py`` script's own parts: its flags over the environment, debug mode."""

from __future__ import annotations

import pytest

import ml_serving
import penguins.serving.app
from tests.support.samples import SAMPLE
from tests.unit.serving.conftest import FixedSource


def test_flags_override_the_environment(monkeypatch, served_model, predlog):
    monkeypatch.setenv("MAX_BATCH_SIZE", "50")
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "7")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("BODY_TIMEOUT_SECONDS", "12")
    args = ml_serving.parse_args([])
    assert (args.max_batch_size, args.refresh_seconds, args.workers) == (50, 7.0, 3)
    assert (args.host, args.port) == ("0.0.0.0", 5000)
    assert (args.header_seconds, args.body_seconds) == (5, 12)
    args = ml_serving.parse_args(["--max-batch-size", "9", "--workers", "4", "--port", "5123"])
    assert (args.max_batch_size, args.workers, args.port) == (9, 4, 5123)
    # The settings the script parsed are what the app serves with.
    app = penguins.serving.app.create_app(args, models=FixedSource(served_model), predlog=predlog)
    assert app.extensions["penguins"].settings.max_batch_size == 9
    client = app.test_client()
    assert client.post("/predict/batch", json={"samples": [SAMPLE] * 9}).status_code == 200
    assert client.post("/predict/batch", json={"samples": [SAMPLE] * 10}).status_code == 413


@pytest.mark.parametrize(
    "argv", [["--workers", "0"], ["--threads", "2"], ["--port", "70000"], ["--port", "x"]]
)
def test_bad_flags_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        ml_serving.parse_args(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_flask_debug_1_runs_the_debugger_in_one_process(monkeypatch):
    runs = []

    class App:
        """Stands in for the Flask app: records how it would be run."""

        def __init__(self, settings) -> None:
            """Keep the settings the app was built from."""
            self.settings = settings

        def run(self, host, port, **options):
            """Record the call instead of serving."""
            runs.append((host, port, options, self.settings.host, self.settings.port))

    monkeypatch.setattr(penguins.serving.app, "create_app", App)
    monkeypatch.setenv("FLASK_DEBUG", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")  # main sets it; restored
    assert ml_serving.main(["--host", "127.0.0.1", "--port", "5999"]) == 0
    debug = {"debug": True, "use_reloader": False}
    assert runs == [("127.0.0.1", 5999, debug, "127.0.0.1", 5999)]
