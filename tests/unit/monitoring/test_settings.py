"""The exporter's settings: defaults, then the environment, then the flags of the script."""

from __future__ import annotations

import dataclasses

import pytest

import prometheus_exporter
from penguins.config import PROJECT_DIR
from penguins.monitoring.settings import MonitorSettings

# Every variable the exporter reads, with the setting it feeds.
ENV = {
    "MLFLOW_TRACKING_URI": "tracking_uri",
    "MODEL_NAME": "model_name",
    "MODEL_ALIAS": "alias",
    "PREDICTION_LOG_URI": "prediction_log_uri",
    "MODEL_REFRESH_SECONDS": "refresh_seconds",
    "PROMETHEUS_HOST": "host",
    "PROMETHEUS_PORT": "port",
    "LIVE_ACCURACY_WINDOW": "accuracy_window",
    "LIVE_ACCURACY_MIN_LABELS": "accuracy_min_labels",
    "DRIFT_WINDOW": "drift_window",
    "DRIFT_MIN_SAMPLES": "drift_min_samples",
    "DRIFT_PSI_THRESHOLD": "drift_threshold",
    "DISK_USAGE_PATH": "disk_path",
    "LOG_LEVEL": "log_level",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Run each test without any of the exporter's variables set."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def parse_error(capsys, argv: list[str]) -> str:
    """Parse ``argv``, expecting argparse's usage error (exit 2); return what it printed."""
    with pytest.raises(SystemExit) as exit_info:
        prometheus_exporter.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_defaults():
    settings = prometheus_exporter.parse_args([])
    assert settings == MonitorSettings()
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.accuracy_window == 500 and settings.accuracy_min_labels == 20
    assert settings.drift_window == 1000 and settings.drift_min_samples == 500
    assert settings.drift_threshold == 0.2 and settings.drift_bins == 10
    assert settings.disk_path == str(PROJECT_DIR) and settings.log_level == "INFO"
    assert settings.tracking_uri == f"sqlite:///{PROJECT_DIR / 'mlflow.db'}"
    assert settings.prediction_log_uri == f"sqlite:///{PROJECT_DIR / 'predictions.db'}"
    assert (settings.model_name, settings.alias) == ("penguins-classifier", "champion")
    assert settings.refresh_seconds == 30.0


def test_every_variable_sets_its_setting(monkeypatch):
    values = {
        "MLFLOW_TRACKING_URI": "sqlite:////tmp/elsewhere.db",
        "MODEL_NAME": "other",
        "MODEL_ALIAS": "challenger",
        "PREDICTION_LOG_URI": "sqlite:////tmp/log.db",
        "MODEL_REFRESH_SECONDS": "5",
        "PROMETHEUS_HOST": "127.0.0.1",
        "PROMETHEUS_PORT": "9999",
        "LIVE_ACCURACY_WINDOW": "50",
        "LIVE_ACCURACY_MIN_LABELS": "5",
        "DRIFT_WINDOW": "300",
        "DRIFT_MIN_SAMPLES": "30",
        "DRIFT_PSI_THRESHOLD": "0.3",
        "DISK_USAGE_PATH": "/tmp",
        "LOG_LEVEL": "DEBUG",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = prometheus_exporter.parse_args([])
    for name, field in ENV.items():
        expected = type(getattr(MonitorSettings(), field))(values[name])
        assert getattr(settings, field) == expected, name


def test_flags_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("PROMETHEUS_PORT", "9999")
    monkeypatch.setenv("DRIFT_PSI_THRESHOLD", "0.3")
    argv = ["--port", "8123", "--drift-threshold", "0.25", "--accuracy-window", "42"]
    argv += ["--accuracy-min-labels", "7", "--drift-window", "77", "--drift-min-samples", "9"]
    argv += ["--host", "127.0.0.1", "--disk-path", "/", "--log-level", "WARNING"]
    settings = prometheus_exporter.parse_args(argv)
    expected = dataclasses.replace(
        MonitorSettings(),
        port=8123,
        drift_threshold=0.25,
        accuracy_window=42,
        accuracy_min_labels=7,
        drift_window=77,
        drift_min_samples=9,
        host="127.0.0.1",
        disk_path="/",
        log_level="WARNING",
    )
    assert settings == expected


@pytest.mark.parametrize(
    "flag", ["--port", "--accuracy-window", "--accuracy-min-labels", "--drift-window",
             "--drift-min-samples"],
)  # fmt: skip
def test_counts_and_the_port_must_be_at_least_one(capsys, flag):
    assert f"{flag} must be at least 1" in parse_error(capsys, [flag, "0"])


def test_the_port_must_exist(capsys):
    assert "--port must be between 1 and 65535" in parse_error(capsys, ["--port", "65536"])


@pytest.mark.parametrize("value", ["0", "-0.1"])
def test_the_drift_threshold_must_be_above_zero(capsys, value):
    assert "--drift-threshold must be above 0" in parse_error(capsys, ["--drift-threshold", value])


def test_a_negative_refresh_period_is_refused(capsys):
    assert "--refresh-seconds must be at least 0" in parse_error(
        capsys, ["--refresh-seconds", "-1"]
    )


def test_a_malformed_variable_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_PORT", "eighty")
    assert "PROMETHEUS_PORT must be an integer" in parse_error(capsys, [])


def test_an_unknown_log_level_is_refused(capsys, monkeypatch):
    assert "--log-level must be one of" in parse_error(capsys, ["--log-level", "LOUD"])
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    assert "LOG_LEVEL must be one of" in parse_error(capsys, [])


def test_the_number_of_bins_has_no_flag(capsys):
    assert "unrecognized arguments: --drift-bins" in parse_error(capsys, ["--drift-bins", "5"])
