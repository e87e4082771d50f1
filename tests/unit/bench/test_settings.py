"""The bench's settings: flags over the environment, the pace of a run, where it writes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench.settings import QUICK, BenchSettings, Pace
from penguins.config import PROJECT_DIR, parse_settings


def settings(*argv: str, **environ: str) -> BenchSettings:
    """Parse the bench's flags over an environment of our own."""
    return parse_settings(BenchSettings, list(argv), "bench", environ=environ)


def test_a_full_run_writes_the_committed_report_and_chart():
    full = settings()
    assert full.outputs() == (
        PROJECT_DIR / "docs" / "BENCHMARKS.md",
        PROJECT_DIR / "docs" / "benchmarks.png",
    )
    assert full.pace == Pace()
    assert full.server_names == ("ours", "mlflow", "mlflow-1w", "mlserver", "bentoml")
    assert full.connections == (1, 8, 32) and full.repeats == 2 and full.workers == 2


def test_a_quick_run_never_overwrites_the_committed_report():
    quick = settings("--quick")
    markdown, chart = quick.outputs()
    assert markdown == Path(tempfile.gettempdir()) / "penguins-bench" / "BENCHMARKS.md"
    assert chart == markdown.with_name("benchmarks.png")
    assert PROJECT_DIR / "docs" not in markdown.parents
    assert quick.pace == QUICK
    assert settings("--quick", "--duration", "3").pace.duration_s == 3.0
    # Unless asked to.
    asked = settings("--quick", "--markdown", "/tmp/x/B.md", "--chart", "/tmp/c.png")
    assert asked.outputs() == (Path("/tmp/x/B.md"), Path("/tmp/c.png"))
    assert settings("--quick", "--no-write").outputs() is None


def test_the_store_and_model_come_from_the_environment_then_the_flags():
    found = settings(MLFLOW_TRACKING_URI="sqlite:////tmp/s.db", MODEL_ALIAS="challenger")
    assert (found.tracking_uri, found.model_uri) == (
        "sqlite:////tmp/s.db",
        "models:/penguins-classifier@challenger",
    )
    assert settings("--alias", "x", MODEL_ALIAS="challenger").alias == "x"


def test_a_baseline_checkout_joins_the_run_after_ours(tmp_path: Path):
    (tmp_path / "ml_serving.py").write_text("")
    found = settings("--baseline", str(tmp_path), "--servers", "ours,mlflow")
    assert found.server_names == ("ours", "baseline", "mlflow")
    assert found.outputs()[0].parent == Path(tempfile.gettempdir()) / "penguins-bench"
    assert settings("--baseline", str(tmp_path), "--servers", "ours").server_names == (
        "ours",
        "baseline",
    )
    assert found.pace.profile_s > 0 and settings("--no-profile").pace.profile_s == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--servers", "ours,bento"], "--servers takes a subset of ours,mlflow,mlflow-1w"),
        (["--connections", "0,8"], "--connections takes positive whole numbers"),
        (["--connections", "one"], "--connections must be"),
        (["--repeats", "1"], "--repeats must be at least 2"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--duration", "0.5"], "--duration must be at least 1"),
        (["--baseline", "/nonexistent"], "no ml_serving.py there"),
        (["--baseline", str(PROJECT_DIR)], "--baseline is this checkout"),
    ],
)
def test_bad_flags_end_with_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        settings(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
