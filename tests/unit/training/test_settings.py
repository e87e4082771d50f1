"""The training settings and the flags of modelling.py: defaults, environment, flags."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelling
from penguins.config import DEFAULT_DATA_PATH, PROJECT_DIR, from_env
from penguins.training.settings import TrainingSettings

FLAGS = ("--data", "--force", "--tracking-uri", "--model-name", "--alias")
STORE_ENV = ("MLFLOW_TRACKING_URI", "MODEL_NAME", "MODEL_ALIAS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Run each test without the store variables of the shell that started pytest."""
    for name in STORE_ENV:
        monkeypatch.delenv(name, raising=False)


def test_help_names_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        modelling.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in out


def test_defaults():
    settings = modelling.parse_args([])
    assert isinstance(settings, TrainingSettings)
    assert settings.data == DEFAULT_DATA_PATH
    assert settings.force is False
    assert settings.tracking_uri == f"sqlite:///{PROJECT_DIR / 'mlflow.db'}"
    assert (settings.model_name, settings.alias) == ("penguins-classifier", "champion")


def test_environment_sets_the_store_and_flags_win(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    monkeypatch.setenv("MODEL_NAME", "from-env")
    monkeypatch.setenv("MODEL_ALIAS", "staging")
    settings = modelling.parse_args(["--model-name", "from-flag"])
    assert settings.tracking_uri == "http://tracking:5000"
    assert (settings.model_name, settings.alias) == ("from-flag", "staging")


def test_flags(tmp_path):
    settings = modelling.parse_args(
        ["--data", str(tmp_path / "d.csv"), "--force", "--tracking-uri", "sqlite:///x.db"]
    )
    assert settings.data == tmp_path / "d.csv"
    assert isinstance(settings.data, Path)
    assert settings.force is True
    assert settings.tracking_uri == "sqlite:///x.db"


def test_data_and_force_have_no_environment_variable():
    settings = from_env(TrainingSettings, {"DATA": "elsewhere.csv", "FORCE": "true"})
    assert settings.data == DEFAULT_DATA_PATH
    assert settings.force is False


def test_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        modelling.parse_args(["--epochs", "3"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
