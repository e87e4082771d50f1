"""The peers' copy of the champion: the MLflow folder both MLServer and BentoML read."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from bench import peers
from penguins.config import sqlite_uri
from tests.support.samples import SAMPLE


def test_the_champions_folder_is_downloaded_whole_and_loads(trained_store, tmp_path: Path):
    folder = peers.download_model(trained_store.model_uri, trained_store.tracking_uri, tmp_path)
    assert folder == tmp_path and (folder / "MLmodel").is_file()
    local = mlflow.sklearn.load_model(str(folder))
    registered = mlflow.sklearn.load_model(trained_store.model_uri)
    row = pd.DataFrame([SAMPLE])
    assert local.predict(row).tolist() == registered.predict(row).tolist() == ["Adelie"]


def test_a_store_without_the_champion_skips_the_peers(tmp_path: Path):
    store = sqlite_uri(tmp_path / "empty.db")
    with pytest.raises(peers.PeerSkipped, match="could not be downloaded"):
        peers.download_model("models:/penguins-classifier@champion", store, tmp_path / "model")
