"""The flags of inference.py: names, defaults, the environment, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import inference
from penguins.config import DEFAULT_DATA_PATH
from penguins.traffic.settings import TrafficSettings

FLAGS = (
    "--url", "--count", "--duration", "--rate", "--concurrency", "--batch-share",
    "--batch-size", "--feedback-share", "--drift", "--invalid-share", "--seed", "--timeout",
    "--data", "--summary-json", "--no-progress",
)  # fmt: skip


def test_defaults_are_bounded_and_local(monkeypatch):
    monkeypatch.delenv("API_URL", raising=False)
    args = inference.parse_args([])
    assert isinstance(args, TrafficSettings)
    assert (args.count, args.duration, args.url) == (200, None, "http://127.0.0.1:5000")


def test_every_default_is_the_one_declared(settings_of):
    assert settings_of() == TrafficSettings()
    settings = TrafficSettings()
    assert (settings.rate, settings.concurrency, settings.timeout) == (20.0, 4, 10.0)
    assert (settings.batch_share, settings.batch_size) == (0.2, 20)
    assert (settings.feedback_share, settings.invalid_share) == (0.5, 0.0)
    assert (settings.drift, settings.no_progress, settings.seed) == (False, False, None)
    assert (settings.data, settings.summary_json) == (DEFAULT_DATA_PATH, None)


def test_api_url_comes_from_the_environment_and_a_flag_wins(settings_of):
    environ = {"API_URL": "http://api.example:8080/"}
    assert settings_of(environ=environ).url == "http://api.example:8080"
    assert settings_of("--url", "http://other:1/", environ=environ).url == "http://other:1"


def test_flags_give_typed_values(settings_of):
    settings = settings_of(
        "--duration", "2.5", "--seed", "7", "--summary-json", "out.json", "--data", "d.csv",
        "--drift", "--no-progress", "--rate", "0", "--batch-share", "1",
    )  # fmt: skip
    assert (settings.duration, settings.seed) == (2.5, 7)
    assert (settings.summary_json, settings.data) == (Path("out.json"), Path("d.csv"))
    assert settings.drift and settings.no_progress
    assert (settings.rate, settings.batch_share) == (0.0, 1.0)
    assert settings_of("--duration", "0").runs_until_stopped
    assert not settings_of("--duration", "1").runs_until_stopped


@pytest.mark.parametrize(
    "argv",
    [
        ["--feedback-share", "1.5"],
        ["--invalid-share", "-0.1"],
        ["--batch-share", "2"],
        ["--batch-size", "1"],
        ["--count", "0"],
        ["--concurrency", "0"],
        ["--count", "5", "--duration", "5"],
        ["--rate", "-1"],
        ["--duration", "-1"],
        ["--timeout", "0"],
        ["--seed", "x"],
    ],
)
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        inference.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        inference.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    assert "[--count COUNT | --duration DURATION]" in " ".join(out.split())
    for flag in FLAGS:
        assert f" {flag}" in out, flag
