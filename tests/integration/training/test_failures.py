"""modelling.py fails with exit code 2 and one clear line on bad data or an unusable store."""

from __future__ import annotations

import pytest

import modelling
from penguins.config import sqlite_uri
from tests.support import free_port


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


def test_unreachable_tracking_server_exits_with_one_clear_line(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    assert modelling.main(["--tracking-uri", uri]) == 2
    assert f"cannot use tracking store {uri}" in caplog.text
