"""The peers: their request shapes and answers, their virtualenvs, skips and the report.

No virtualenv is built and no peer is started here: the install commands are replaced
by tiny Python one-liners, so the tests need neither the network nor pip.
"""

from __future__ import annotations

import copy
import json
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from bench import BenchError, peers, report, servers, suite
from bench.settings import BenchSettings
from penguins.config import parse_settings
from penguins.features import FEATURES
from tests.support.samples import SAMPLE
from tests.unit.bench.test_report import FIGURES, _runs


def _spec(kind: str) -> servers.ServerSpec:
    """Return a spec of a kind, with nothing to start."""
    return servers.ServerSpec(kind, [], {}, 1, kind)


def _python(code: str) -> list[str]:
    """Return a command that runs a line of Python."""
    return [sys.executable, "-c", code]


def test_mlserver_gets_a_v2_request_with_one_pandas_input_per_feature():
    request = json.loads(servers.body(_spec("mlserver"), servers.rows(3), batch=True))
    assert request["parameters"] == {"content_type": "pd"}
    assert [one["name"] for one in request["inputs"]] == list(FEATURES)
    kinds = {one["name"]: one["datatype"] for one in request["inputs"]}
    assert kinds["bill_length_mm"] == "FP64" and kinds["island_encoded"] == "INT64"
    assert all(one["shape"] == [3, 1] for one in request["inputs"])
    one_row = json.loads(servers.body(_spec("mlserver"), servers.rows(3), batch=False))
    assert {one["name"]: one["data"] for one in one_row["inputs"]} == {
        k: [v] for k, v in SAMPLE.items()
    }
    assert isinstance(one_row["inputs"][4]["data"][0], int)


def test_bentoml_gets_the_same_records_as_our_batch():
    frame = servers.rows(3)
    ours = json.loads(servers.body(_spec("ours"), frame, batch=True))
    assert json.loads(servers.body(_spec("bentoml"), frame, batch=True)) == {
        "records": ours["samples"]
    }
    assert json.loads(servers.body(_spec("bentoml"), frame, batch=False)) == {"records": [SAMPLE]}


def test_each_peer_answer_gives_its_species():
    answer = {
        "model_name": servers.MLSERVER_MODEL,
        "outputs": [{"name": "output-1", "shape": [1, 1], "datatype": "BYTES", "data": ["Gentoo"]}],
    }
    assert servers.species_of(_spec("mlserver"), answer) == "Gentoo"
    assert servers.species_of(_spec("mlserver"), {"outputs": []}) is None
    assert servers.species_of(_spec("bentoml"), ["Adelie"]) == "Adelie"
    assert servers.species_of(_spec("bentoml"), []) is None


def test_each_peer_has_its_health_and_prediction_routes():
    infer = f"/v2/models/{servers.MLSERVER_MODEL}/infer"
    assert _spec("mlserver").routes == (f"/v2/models/{servers.MLSERVER_MODEL}/ready", infer, infer)
    assert _spec("bentoml").routes == ("/readyz", "/predict", "/predict")
    assert not _spec("mlserver").ours and _spec("ours").ours


def test_mlserver_is_started_on_free_ports_with_our_worker_count(tmp_path: Path):
    spec = peers.mlserver("mlserver", tmp_path / "venv", tmp_path / "model", 3, tmp_path / "ml")
    assert spec.argv == [str(tmp_path / "venv/bin/mlserver"), "start", str(tmp_path / "ml")]
    settings = json.loads((tmp_path / "ml/settings.json").read_text())
    assert settings["http_port"] == spec.port and settings["parallel_workers"] == 3
    assert settings["host"] == "127.0.0.1"
    assert len({settings[k] for k in ("http_port", "grpc_port", "metrics_port")}) == 3
    # Nothing lands in the project's working directory.
    assert Path(settings["metrics_dir"]).parent == tmp_path / "ml"
    model = json.loads(
        (tmp_path / "ml" / servers.MLSERVER_MODEL / "model-settings.json").read_text()
    )
    assert model["implementation"] == "mlserver_mlflow.MLflowRuntime"
    assert model["parameters"]["uri"] == str(tmp_path / "model")
    assert spec.env["PATH"].startswith(str(tmp_path / "venv/bin"))


def test_bentoml_serves_the_service_file_on_the_model_folder(tmp_path: Path):
    spec = peers.bentoml("bentoml", tmp_path / "venv", tmp_path / "model", 2, tmp_path / "home")
    assert spec.argv[:3] == [str(tmp_path / "venv/bin/bentoml"), "serve", "bento_service:Penguins"]
    assert (peers.REQUIREMENTS_DIR / "bento_service.py").is_file()
    assert spec.argv[spec.argv.index("--port") + 1] == str(spec.port)
    assert spec.env["PENGUINS_MODEL_DIR"] == str(tmp_path / "model")
    assert spec.env["PENGUINS_WORKERS"] == "2"
    assert spec.env["BENTOML_HOME"] == str(tmp_path / "home")


def test_the_suite_builds_a_peer_spec_from_its_virtualenv(tmp_path: Path):
    settings = parse_settings(BenchSettings, ["--workers", "3"], "bench", environ={})
    spec = suite.spec_of("bentoml", settings, "sqlite:////s.db", tmp_path)
    assert spec.argv[0] == str(peers.venv_dir("bentoml") / "bin" / "bentoml")
    assert spec.env["PENGUINS_MODEL_DIR"] == str(tmp_path / suite.MODEL_DIR)
    assert spec.env["PENGUINS_WORKERS"] == "3"
    with pytest.raises(ValueError, match="no peer"):
        peers.spec("ours", tmp_path, 2, tmp_path)


def test_every_peer_has_pins_that_match_ours():
    ours = dict(
        line.split("==")
        for line in Path("requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name in peers.PEERS:
        pins = dict(
            line.split("==")
            for line in peers.requirements(name).read_text().splitlines()
            if "==" in line and not line.startswith("#")
        )
        for package in ("mlflow", "scikit-learn", "skops", "pandas", "numpy"):
            assert pins[package] == ours[package], (name, package)
    assert "uvloop==0.21.0" in peers.requirements("mlserver").read_text()


def test_a_virtualenv_is_keyed_by_its_pins_and_the_python(tmp_path: Path):
    pins = tmp_path / "p.txt"
    pins.write_text("a==1\n")
    key = peers.venv_key(pins, "3.11.7")
    assert key == peers.venv_key(pins, "3.11.7") != peers.venv_key(pins, "3.12.1")
    assert peers.venv_dir("x", tmp_path, pins).name == f"x-{peers.venv_key(pins)}"
    pins.write_text("a==2\n")
    assert peers.venv_key(pins, "3.11.7") != key


def test_a_ready_virtualenv_is_reused_and_a_changed_pin_rebuilds(tmp_path, monkeypatch):
    pins, root = tmp_path / "x.txt", tmp_path / "venvs"
    pins.write_text("a==1\n")
    made = []

    def steps(venv: Path, _pins: Path) -> list[list[str]]:
        made.append(venv)
        return [_python(f"import os; os.makedirs({str(venv)!r})")]

    monkeypatch.setattr(peers, "install_steps", steps)
    first = peers.build("x", root, say=lambda _: None, pins=pins)
    assert (first / peers.READY).is_file()
    assert peers.build("x", root, say=lambda _: None, pins=pins) == first
    assert made == [first]
    pins.write_text("a==2\n")
    second = peers.build("x", root, say=lambda _: None, pins=pins)
    assert second != first and made == [first, second]
    assert not first.exists()  # the old pins' virtualenv is gone


def test_a_failed_install_skips_the_peer_with_pips_last_lines(tmp_path, monkeypatch):
    pins, root = tmp_path / "x.txt", tmp_path / "venvs"
    pins.write_text("nosuch==1\n")
    lines = ["Collecting nosuch==1", "ERROR: No matching distribution found for nosuch==1"]
    failing = f"import os, sys; os.makedirs(sys.argv[1]); print({chr(10).join(lines)!r}); exit(1)"

    def steps(venv: Path, _pins: Path) -> list[list[str]]:
        return [[*_python(failing), str(venv)]]

    monkeypatch.setattr(peers, "install_steps", steps)
    with pytest.raises(peers.PeerSkipped, match="exited 1") as skipped:
        peers.build("x", root, say=lambda _: None, pins=pins)
    assert "No matching distribution found for nosuch==1" in str(skipped.value)
    assert not list(root.glob("x-*"))  # nothing half-installed stays
    monkeypatch.setattr(peers, "requirements", lambda name: pins)
    monkeypatch.setattr(peers, "PEERS", ("x",))
    ready, reasons = peers.prepare(["ours", "x"], root, say=lambda _: None)
    assert ready == {} and list(reasons) == ["x"]
    assert reasons["x"].startswith("not installed: `python -c")
    assert reasons["x"].endswith("No matching distribution found for nosuch==1")


def test_an_install_that_takes_too_long_is_skipped(tmp_path, monkeypatch):
    pins = tmp_path / "x.txt"
    pins.write_text("a==1\n")
    monkeypatch.setattr(
        peers, "install_steps", lambda v, p: [_python("import time; time.sleep(30)")]
    )
    with pytest.raises(peers.PeerSkipped, match="did not finish within 1 s"):
        peers.build("x", tmp_path, timeout_s=1, say=lambda _: None, pins=pins)


def test_a_run_without_peers_builds_no_virtualenv(monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("a virtualenv was built")

    monkeypatch.setattr(peers, "build", build)
    assert peers.prepare(["ours", "mlflow", "mlflow-1w"]) == ({}, {})
    settings = parse_settings(BenchSettings, ["--servers", "ours,mlflow"], "bench", environ={})
    figures = {"peers": {}, "skipped": {}}
    suite.install_peers(settings, figures, lambda _: None)
    assert figures == {"peers": {}, "skipped": {}}


def test_output_tails_keep_the_last_lines_and_the_error_before_them():
    assert peers.last_lines("a\n\nb\nc\n", 2) == "b\nc"
    assert peers.last_lines("") == "(no output)"
    log = "Traceback:\n  File x\nRuntimeError: no current event loop\nshutting down\ndone\n"
    assert (
        peers.last_lines(log, 2) == "RuntimeError: no current event loop\n...\nshutting down\ndone"
    )
    assert peers.last_lines(log, 3) == "RuntimeError: no current event loop\nshutting down\ndone"


def _with_peers(skip_bentoml: bool) -> dict:
    """Return the report's test figures with MLServer measured and BentoML measured or skipped."""
    figures = copy.deepcopy(FIGURES)
    figures["small_batch_rows"] = 1000
    figures["servers"]["ours"]["small_batch_s"] = [0.01, 0.01, 0.01]  # 100,000 rows/s
    figures["servers"]["mlserver"] = {
        "load": {"1": _runs(60, 12.0), "8": _runs(200, 40.0)},
        "small_batch_s": [0.02, 0.02, 0.02],  # 50,000 rows/s
        "batch_s": [0.2, 0.2, 0.2],
    }
    figures["peers"] = {"mlserver": {"versions": {"mlserver": "1.7.1", "uvloop": "0.21.0"}}}
    if skip_bentoml:
        figures["skipped"] = {"bentoml": "not installed: `python -m pip` exited 1:\nERROR: boom"}
    else:
        figures["servers"]["bentoml"] = {
            "load": {"8": _runs(250, 40.0)},
            "small_batch_s": [0.04, 0.04, 0.04],  # 25,000 rows/s
        }
    return figures


def test_the_peer_targets_are_judged_on_every_peer_that_ran():
    goals = report.goals(_with_peers(skip_bentoml=False))
    # ours 3,000 req/s at 8 conn.: 15x MLServer, 12x BentoML; 1,000 rows: 2x and 4x.
    assert goals["one-row req/s, 8 conn."] == (
        ">= 10x each mlflow serve, MLServer and BentoML",
        True,
    )
    assert goals["1,000-row batch, rows/s"] == (">= 2x each MLServer and BentoML", True)
    figures = _with_peers(skip_bentoml=False)
    figures["servers"]["bentoml"]["small_batch_s"] = [0.015] * 3  # ours is 1.5x that
    assert report.goals(figures)["1,000-row batch, rows/s"].met is False
    # Without peers in the run, there is no peer target at all.
    assert "1,000-row batch, rows/s" not in report.goals(FIGURES)


def test_the_report_says_which_peer_was_skipped_and_why():
    figures = _with_peers(skip_bentoml=True)
    table = dict((row[0], row[1:]) for row in report.comparison(figures)[1])
    assert table["1,000-row batch, rows/s"][-2:] == [
        ">= 2x each MLServer (BentoML skipped)",
        "met",
    ]
    assert table["one-row req/s, 8 conn."][-2] == (
        ">= 10x each mlflow serve and MLServer (BentoML skipped)"
    )
    assert "BentoML" not in report.comparison(figures)[0][1:]
    text = report.markdown(figures)
    assert "Skipped, so not measured: BentoML" in text
    assert "## Skipped, not measured" in text
    assert "- BentoML: not installed: `python -m pip` exited 1:" in text
    assert "  ERROR: boom" in text
    assert "MLServer 1.7.1 (2 workers)" in text
    assert "- MLServer, in a virtual" in text and "uvloop 0.21.0" in text
    assert text.endswith("\n") and "\n\n\n" not in text
    assert "skipped bentoml: not installed" in report.summary(figures)


def test_every_skipped_peer_leaves_the_batch_target_unmeasured():
    figures = _with_peers(skip_bentoml=True)
    del figures["servers"]["mlserver"]
    figures["skipped"]["mlserver"] = "did not start: exited 1"
    goal = report.goals(figures)["1,000-row batch, rows/s"]
    assert goal == (">= 2x each peer (MLServer and BentoML skipped)", None)


def test_the_chart_draws_the_peers(tmp_path: Path):
    figures = _with_peers(skip_bentoml=False)
    report.chart(figures, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_peer_that_does_not_start_is_skipped_and_ours_fails_the_run(tmp_path, monkeypatch):
    log = "RuntimeError: There is no current event loop\nShutdown complete\n"

    @contextmanager
    def crashing(spec, log_dir, timeout_s=120.0):
        raise BenchError(f"{spec.url('/')}: the process ended before answering; log:\n{log}")
        yield

    monkeypatch.setattr(servers, "running", crashing)
    argv = ["--servers", "mlserver,bentoml"]
    settings = parse_settings(BenchSettings, argv, "bench", environ={})
    figures = {"servers": {}, "skipped": {"bentoml": "not installed: boom"}}
    with ExitStack() as stack:
        started = suite.start_servers(settings, "u", tmp_path, stack, figures, lambda _: None)
    assert started == {} and figures["servers"] == {}
    assert figures["skipped"]["bentoml"] == "not installed: boom"  # not started at all
    reason = figures["skipped"]["mlserver"]
    assert reason.startswith("did not start: http://127.0.0.1:")
    assert reason.endswith("RuntimeError: There is no current event loop\nShutdown complete")
    ours = parse_settings(BenchSettings, ["--servers", "ours"], "bench", environ={})
    with ExitStack() as stack, pytest.raises(BenchError, match="event loop"):
        suite.start_servers(ours, "u", tmp_path, stack, {"servers": {}, "skipped": {}}, print)


def test_the_bentoml_service_names_the_features_in_the_contracts_order():
    # It runs in the peer's virtualenv, without this package: its copy must not drift.
    import ast

    tree = ast.parse((peers.REQUIREMENTS_DIR / "bento_service.py").read_text())
    found = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FEATURES"
    )
    assert ast.literal_eval(found) == FEATURES
