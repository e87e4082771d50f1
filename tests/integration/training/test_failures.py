"""modelling.py fails with exit code 2 and one clear line on bad data or an unusable store."""

from __future__ import annotations

import subprocess
import sys

import pytest

import modelling
from penguins.config import sqlite_uri
from tests.support import PROJECT_DIR, free_port


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "data file not found"),
        ("not,a,penguin\n1,2,3\n", "data is missing columns"),
        ("", "cannot parse"),
    ],
)
def test_bad_data_exits_with_one_clear_line(tmp_path, capsys, caplog, content, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    uri = sqlite_uri(tmp_path / "m.db")
    code = modelling.main(["--data", str(path), "--tracking-uri", uri])
    assert code == 2
    assert message in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()  # the data is checked before the store is touched


def test_unreachable_tracking_server_exits_with_one_clear_line():
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "modelling.py", "--tracking-uri", uri],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot reach the MLflow tracking server at {uri}: connection refused; "
        "start it or check --tracking-uri (MLFLOW_TRACKING_URI)"
    ], result.stderr
    assert "Retrying" not in result.stderr + result.stdout
    assert all(len(line) <= 200 for line in lines)
