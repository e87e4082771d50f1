"""Settings: defaults, then the environment, then flags, each declared once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from penguins.config import (
    PROJECT_DIR,
    ServiceSettings,
    StoreSettings,
    from_env,
    parse_settings,
    setting,
    sqlite_path,
    sqlite_uri,
)


@dataclass(frozen=True)
class Example(StoreSettings):
    """Settings of an imaginary script, to exercise every kind of setting."""

    port: int = setting(8000, "port", env="EXAMPLE_PORT", minimum=1)
    ratio: float = setting(0.5, "share", env="EXAMPLE_RATIO")
    verbose: bool = setting(False, "say more", env="EXAMPLE_VERBOSE")
    level: str = setting("INFO", "log level", choices=("INFO", "DEBUG"))
    hidden: int = setting(3, "no flag", env="EXAMPLE_HIDDEN", flag=False)
    count: int = setting(10, "how many", group="amount")
    duration: float | None = setting(None, "how long", parse=float, group="amount")
    computed: int = setting(None, "computed", parse=int, factory=lambda: 42)

    def problem(self) -> str | None:
        """Refuse a ratio above one."""
        return "--ratio must be at most 1" if self.ratio > 1 else None


def test_defaults_apply_when_nothing_is_set():
    s = from_env(Example, environ={})
    assert s.port == 8000 and s.verbose is False and s.computed == 42
    assert s.tracking_uri == f"sqlite:///{PROJECT_DIR / 'mlflow.db'}"
    assert (s.model_name, s.alias) == ("penguins-classifier", "champion")


def test_the_environment_overrides_defaults_and_empty_values_are_unset():
    env = {
        "EXAMPLE_PORT": "9000",
        "EXAMPLE_VERBOSE": "true",
        "MODEL_ALIAS": "",
        "EXAMPLE_HIDDEN": "7",
    }
    s = from_env(Example, environ=env)
    assert (s.port, s.verbose, s.alias, s.hidden) == (9000, True, "champion", 7)


def test_flags_override_the_environment():
    s = parse_settings(
        Example, ["--port", "7000", "--verbose"], "x", environ={"EXAMPLE_PORT": "9000"}
    )
    assert s.port == 7000 and s.verbose is True


def test_overrides_win_over_both():
    assert from_env(Example, environ={"EXAMPLE_PORT": "9000"}, port=1).port == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXAMPLE_PORT": "abc"}, "EXAMPLE_PORT must be an integer, got 'abc'"),
        ({"EXAMPLE_RATIO": "x"}, "EXAMPLE_RATIO must be a number, got 'x'"),
        ({"EXAMPLE_VERBOSE": "maybe"}, "EXAMPLE_VERBOSE must be true or false"),
        ({"EXAMPLE_PORT": "0"}, "EXAMPLE_PORT must be at least 1"),
    ],
)
def test_a_bad_environment_value_names_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        from_env(Example, environ=env)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "0"], {}, "--port must be at least 1"),
        (["--level", "LOUD"], {}, "--level must be one of INFO, DEBUG"),
        (["--ratio", "2"], {}, "--ratio must be at most 1"),
        (["--count", "3", "--duration", "1"], {}, "not allowed with argument"),
        ([], {"EXAMPLE_PORT": "abc"}, "EXAMPLE_PORT must be an integer"),
    ],
)
def test_bad_input_ends_with_a_usage_error(argv, env, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(Example, argv, "x", environ=env)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_names_each_flag_with_its_default_and_variable(capsys):
    with pytest.raises(SystemExit):
        parse_settings(Example, ["--help"], "an example", environ={"EXAMPLE_PORT": "9000"})
    out = capsys.readouterr().out
    assert "an example" in out
    assert "--port PORT" in out and "(default: 9000, from $EXAMPLE_PORT)" in out
    assert "--tracking-uri" in out and "$MLFLOW_TRACKING_URI" in out
    assert "--hidden" not in out


def test_service_settings_add_the_log_and_the_refresh_period():
    s = from_env(ServiceSettings, environ={"MODEL_REFRESH_SECONDS": "2.5"})
    assert s.refresh_seconds == 2.5
    assert s.prediction_log_uri == f"sqlite:///{PROJECT_DIR / 'predictions.db'}"


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:////abs/mlflow.db", Path("/abs/mlflow.db")),
        ("sqlite:///rel.db", Path("rel.db")),
        ("sqlite://", None),
        ("sqlite:///", None),
        ("http://localhost:5001", None),
        ("postgresql://u@h/db", None),
    ],
)
def test_sqlite_uris_are_parsed_in_one_place(uri, path):
    assert sqlite_path(uri) == path
    if path is not None:
        assert sqlite_uri(path) == uri


def test_a_script_can_word_an_inherited_flag_its_own_way(capsys):
    @dataclass(frozen=True)
    class Worded(StoreSettings):
        """Settings that reword the alias flag."""

        FLAG_HELP: ClassVar[dict[str, str]] = {"alias": "alias to move"}

    with pytest.raises(SystemExit):
        parse_settings(Worded, ["--help"], "x", environ={})
    out = capsys.readouterr().out
    assert "alias to move (default: champion" in out
    assert "alias of the version to serve or move" not in out
