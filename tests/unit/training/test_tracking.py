"""What a run logs that needs no store: the signature, trusted types, artifact root, scoping."""

from __future__ import annotations

import mlflow
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from penguins.config import DEFAULT_DATA_PATH, sqlite_uri
from penguins.features import FEATURES
from penguins.training.tracking import (
    artifact_root,
    file_sha256,
    pip_requirements,
    run_tags,
    signature,
    trusted_types,
    using_store,
)


def test_signature_follows_the_feature_contract():
    sig = signature()
    assert [c.name for c in sig.inputs.inputs] == list(FEATURES)
    assert [t.name for t in sig.inputs.input_types()] == ["double"] * 4 + ["long"] * 2
    assert [t.name for t in sig.outputs.input_types()] == ["string"]


@pytest.mark.parametrize("name", ["logistic_regression", "svm", "random_forest"])
def test_trusted_types_are_scikit_learn_and_numpy_only(fitted, name):
    types = trusted_types(fitted[name])
    assert all(t.startswith(("sklearn.", "numpy.")) for t in types)


def test_forest_needs_its_tree_type_trusted(fitted):
    assert "sklearn.tree._tree.Tree" in trusted_types(fitted["random_forest"])


def test_a_foreign_type_is_refused():
    foreign = Pipeline([("step", FunctionTransformer(func=_double))]).fit([[1.0]])
    with pytest.raises(RuntimeError, match="outside scikit-learn"):
        trusted_types(foreign)


def _double(x):
    """Double the input: a function skops does not know."""
    return x * 2


def test_requirements_pin_what_loads_the_model():
    pins = pip_requirements()
    assert [p.split("==")[0] for p in pins] == [
        "mlflow",
        "scikit-learn",
        "skops",
        "numpy",
        "pandas",
    ]
    assert f"mlflow=={mlflow.__version__}" in pins


def test_runs_are_tagged_with_the_data_they_saw(data):
    tags = run_tags(data, DEFAULT_DATA_PATH)
    assert tags["data_sha256"] == file_sha256(DEFAULT_DATA_PATH)
    assert len(tags["data_sha256"]) == 64
    assert tags["data_rows"] == str(len(data))


def test_sqlite_artifacts_go_beside_the_database(tmp_path):
    uri = sqlite_uri(tmp_path / "store" / "mlflow.db")
    assert artifact_root(uri) == (tmp_path / "store" / "mlartifacts").as_uri()
    relative = artifact_root("sqlite:///mlflow.db")
    assert relative is not None and relative.endswith("/mlartifacts")


def test_a_tracking_server_decides_its_own_artifact_root():
    assert artifact_root("http://127.0.0.1:5001") is None


def test_using_store_restores_the_global_store(tmp_path):
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    uri = sqlite_uri(tmp_path / "mlflow.db")
    with using_store(uri):
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (uri, uri)
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    with pytest.raises(KeyError), using_store(uri):
        raise KeyError("even when the block fails")
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert not (tmp_path / "mlflow.db").exists()
