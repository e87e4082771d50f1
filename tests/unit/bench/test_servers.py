"""How each server is started and what it is sent (no process is started here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import servers
from bench.settings import BenchSettings
from bench.suite import alternating, spec_of
from penguins.config import DEFAULT_DATA_PATH, PROJECT_DIR, parse_settings
from penguins.features import FEATURES, load_dataset
from tests.support.samples import SAMPLE

MODEL = "models:/penguins-classifier@champion"


def test_our_api_runs_from_the_checkout_given_with_this_interpreter(tmp_path: Path):
    env = {"MLFLOW_TRACKING_URI": "sqlite:////s.db", "PREDICTION_LOG_URI": "sqlite:////l.db"}
    spec = servers.ours("baseline", tmp_path, 2, MODEL_ALIAS="champion", **env)
    assert spec.argv[:2] == [sys.executable, str(tmp_path / "ml_serving.py")]
    assert spec.argv[2:] == ["--host", "127.0.0.1", "--port", str(spec.port), "--workers", "2"]
    assert spec.env["MLFLOW_TRACKING_URI"] == "sqlite:////s.db"
    assert spec.env["PREDICTION_LOG_URI"] == "sqlite:////l.db"
    assert spec.env["MODEL_ALIAS"] == "champion"
    # An exported MODEL_URI would make it serve something else than the champion.
    assert spec.env["MODEL_URI"] == ""
    assert spec.env["PATH"].startswith(str(servers.VENV_BIN))
    assert spec.ours and spec.routes == ("/health", "/predict", "/predict/batch")
    assert spec.url("/metrics") == f"http://127.0.0.1:{spec.port}/metrics"


def test_mlflow_serves_the_same_model_from_the_venv():
    spec = servers.mlflow_serve("mlflow-1w", "sqlite:////s.db", MODEL, 1)
    assert spec.argv[:5] == [str(servers.VENV_BIN / "mlflow"), "models", "serve", "-m", MODEL]
    assert spec.argv[-6:] == ["-p", str(spec.port), "--host", "127.0.0.1", "--workers", "1"]
    assert "--env-manager" in spec.argv and not spec.ours
    assert spec.routes == ("/ping", "/invocations", "/invocations")


def test_each_server_gets_the_same_rows_in_its_own_request_shape():
    ours = servers.ours("ours", Path("."), 2)
    mlflow = servers.mlflow_serve("mlflow", "u", MODEL, 2)
    frame = servers.rows(3)
    one = json.loads(servers.body(ours, frame, batch=False))
    assert one == SAMPLE  # the data set's first row
    assert isinstance(one["island_encoded"], int)
    assert json.loads(servers.body(ours, frame, batch=True)) == {
        "samples": json.loads(servers.body(mlflow, frame, batch=True))["dataframe_records"]
    }
    assert json.loads(servers.body(mlflow, frame, batch=False)) == {"dataframe_records": [one]}
    assert servers.species_of(ours, {"predicted_species": "Adelie"}) == "Adelie"
    assert servers.species_of(mlflow, {"predictions": ["Adelie"]}) == "Adelie"


def test_rows_cycle_through_the_data_set():
    data = load_dataset(DEFAULT_DATA_PATH)
    frame = servers.rows(len(data) + 2)
    assert frame.columns.tolist() == list(FEATURES)
    assert frame.index.tolist() == list(range(len(data) + 2))
    assert frame.iloc[len(data) + 1].tolist() == frame.iloc[1].tolist()
    assert frame.iloc[1].tolist() != frame.iloc[0].tolist()


def test_the_first_server_alternates_between_rounds():
    assert list(alternating(["ours", "baseline", "mlflow"], 3)) == [
        ["ours", "baseline", "mlflow"],
        ["mlflow", "baseline", "ours"],
        ["ours", "baseline", "mlflow"],
    ]


def test_the_baseline_is_our_api_from_its_own_checkout_with_its_own_log(tmp_path: Path):
    (tmp_path / "ml_serving.py").write_text("")
    argv = ["--baseline", str(tmp_path), "--alias", "challenger", "--workers", "3"]
    settings = parse_settings(BenchSettings, argv, "bench", environ={})
    specs = {n: spec_of(n, settings, "sqlite:////s.db", tmp_path) for n in settings.server_names}
    assert specs["baseline"].argv[1] == str(tmp_path / "ml_serving.py")
    assert specs["ours"].argv[1] == str(PROJECT_DIR / "ml_serving.py")
    for name in ("ours", "baseline"):
        env = specs[name].env
        assert env["PREDICTION_LOG_URI"] == f"sqlite:///{tmp_path}/predictions-{name}.db"
        assert (env["MODEL_NAME"], env["MODEL_ALIAS"]) == ("penguins-classifier", "challenger")
        assert specs[name].argv[-2:] == ["--workers", "3"]
    assert "models:/penguins-classifier@challenger" in specs["mlflow"].argv
    assert specs["mlflow"].argv[-1] == "3" and specs["mlflow-1w"].argv[-1] == "1"
