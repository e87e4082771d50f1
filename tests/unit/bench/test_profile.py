"""Folding py-spy's samples into buckets named by the serving files they cover."""

from __future__ import annotations

import pytest

from bench import profile

HANDLE = 'process 1:"m";process 2:"w";SyncWorker.handle (gunicorn/workers/sync.py:1);'
ROUTE = f"{HANDLE}wsgi_app (flask/app.py:1);predict (penguins/serving/endpoints.py:3);"
PATH = f"{ROUTE}PredictionService.predict (penguins/serving/dataplane.py:9);"
FOLDED = f"""\
process 1:"python ml_serving.py";<module> (ml_serving.py:9);Arbiter.run (gunicorn/arbiter.py:1) 50
{PATH}FastPredictor.predict_proba (penguins/serving/fastpath.py:5) 30
{PATH}PredictionLog.record_predictions (penguins/predlog.py:7);execute (sqlite3/dbapi2.py:1) 10
{HANDLE}Request.parse (gunicorn/http/message.py:2) 5
{PATH}uuid4 (uuid.py:9) 5
"""


def test_profile_breakdown_counts_only_request_samples_once_each():
    found = profile.breakdown(profile.parse_folded(FOLDED))
    # The master's 50 samples handle no request: they are counted, not attributed.
    assert (found["samples"], found["busy_samples"]) == (100, 50)
    assert found["buckets"] == {
        "model: serving/model.py, serving/fastpath.py, scikit-learn": 60.0,
        "prediction log: predlog.py, SQLite": 20.0,
        "gunicorn: sockets, HTTP parsing, worker loop": 10.0,
        # Flask is further up this stack, but the time is spent in the prediction path's
        # uuid4 call.
        "prediction path: serving/dataplane.py": 10.0,
    }
    assert sum(found["buckets"].values()) == pytest.approx(100.0)
    assert found["own_code"] == [
        ("PredictionService.predict (penguins/serving/dataplane.py)", 90.0),
        ("predict (penguins/serving/endpoints.py)", 90.0),
        ("FastPredictor.predict_proba (penguins/serving/fastpath.py)", 60.0),
        ("PredictionLog.record_predictions (penguins/predlog.py)", 20.0),
    ]


@pytest.mark.parametrize(
    ("inner", "bucket"),
    [
        # Everything under a file of its own is that file's time, whatever it calls.
        ("new_ids (penguins/serving/ids.py:14)", "prediction ids: serving/ids.py"),
        ("batch (penguins/serving/answers.py:59);dumps (json/__init__.py:1)", "answer text"),
        ("fast_rows (penguins/serving/schemas.py:80)", "checks: serving/schemas.py"),
        (
            "validate (penguins/serving/parsing.py:70);validate_python (pydantic/main.py:1)",
            "checks",
        ),
        ("batch_rows (penguins/serving/parsing.py:86)", "parsing, JSON"),
        ("observe_predictions (penguins/serving/metrics.py:1)", "metrics:"),
        ("inc (prometheus_client/metrics.py:1)", "metrics:"),
        ("predict_proba (penguins/serving/model.py:72);predict_proba (sklearn/x.py:1)", "model:"),
        ("current (penguins/serving/manager.py:40)", "model refresh"),
        ("stack (numpy/core/shape_base.py:1)", "prediction path"),
        # The flat layout of a baseline from before penguins/serving/ is bucketed alike.
        ("predict_proba (penguins/served_model.py:9)", "model:"),
        ("predict_proba (penguins/fastpath.py:9)", "model:"),
        ("fast_rows (penguins/schemas.py:80)", "checks:"),
        ("observe (penguins/metrics.py:1)", "metrics:"),
        ("uuid4 (/usr/lib/python3.11/uuid.py:1)", "prediction ids"),
    ],
)
def test_each_serving_file_has_its_bucket(inner: str, bucket: str):
    frames = [*PATH.rstrip(";").split(";"), *inner.split(";")]
    frames = [f for f in frames if not f.startswith("process ")]
    assert profile.bucket_of(frames).startswith(bucket)


def test_layers_go_to_the_innermost_frame_that_has_one():
    assert profile.bucket_of(ROUTE.rstrip(";").split(";")[2:]) == (
        "routes and the rest of penguins/ (stdlib it calls)"
    )
    assert profile.bucket_of(["SyncWorker.handle (gunicorn/workers/sync.py:1)"]).startswith(
        "gunicorn"
    )
    assert profile.bucket_of(["wsgi_app (flask/app.py:1)", "x (werkzeug/a.py:1)"]).startswith(
        "Flask"
    )
    assert profile.bucket_of(["select (selectors.py:1)"]) == profile.OTHER


def test_record_command_samples_the_whole_tree_into_a_file(tmp_path):
    command = profile.record_command(1234, 7.6, tmp_path / "out.txt")
    assert command[1:5] == ["record", "--pid", "1234", "--subprocesses"]
    assert command[-4:] == ["--duration", "8", "--output", str(tmp_path / "out.txt")]
    assert "raw" in command
