"""Training end to end into a real SQLite MLflow store, checked through MlflowClient."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

import modelling
from penguins.config import EXPERIMENT_NAME
from penguins.features import FEATURES, SPECIES, load_dataset
from penguins.registry import REFERENCE_ARTIFACT
from penguins.training import Result, candidates, pick_best, promote, split, using_store
from tests.conftest import DATA_PATH, train_into
from tests.support import free_port

METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")


@pytest.fixture(scope="module")
def client(trained_store) -> MlflowClient:
    """Return a client on the session's trained store."""
    return MlflowClient(trained_store.tracking_uri, registry_uri=trained_store.tracking_uri)


@pytest.fixture(scope="module")
def runs(client):
    """Return the runs of the training experiment."""
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


def test_one_run_per_algorithm(runs):
    names = sorted(r.data.params["algorithm"] for r in runs)
    assert names == ["logistic_regression", "random_forest", "svm"]


def test_runs_carry_test_and_cv_metrics(runs):
    for run in runs:
        metrics = run.data.metrics
        for name in (*METRICS, "cv_accuracy_mean", "cv_accuracy_std", "fit_time_seconds"):
            assert name in metrics, (run.info.run_name, name)
        for name in (*METRICS, "cv_accuracy_mean"):
            assert 0.8 <= metrics[name] <= 1.0, (run.info.run_name, name, metrics[name])
        assert len(run.data.tags["data_sha256"]) == 64


def test_runs_share_one_split(runs):
    params = {(r.data.params["test_size"], r.data.params["seed"]) for r in runs}
    assert len(params) == 1


def test_runs_log_artifacts_and_datasets(client, runs):
    for run in runs:
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "confusion_matrix.png" in files
        reference = {a.path for a in client.list_artifacts(run.info.run_id, "reference")}
        assert REFERENCE_ARTIFACT in reference
        contexts = {
            tag.value
            for dataset_input in run.inputs.dataset_inputs
            for tag in dataset_input.tags
            if tag.key == "mlflow.data.context"
        }
        assert contexts == {"training", "testing"}


def test_confusion_matrix_is_a_png(client, runs, tmp_path):
    path = client.download_artifacts(runs[0].info.run_id, "confusion_matrix.png", str(tmp_path))
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_champion_is_registered_with_signature(trained_store, client):
    version = client.get_model_version_by_alias(trained_store.model_name, trained_store.alias)
    assert version.tags["algorithm"] in {c.name for c in candidates()}
    with using_store(trained_store.tracking_uri):
        info = mlflow.models.get_model_info(trained_store.model_uri)
    assert [c.name for c in info.signature.inputs.inputs] == list(FEATURES)
    assert info.signature.inputs.input_types()[-1].name == "long"


def test_champion_predicts_the_contract_classes(trained_store):
    with using_store(trained_store.tracking_uri):
        model = mlflow.sklearn.load_model(trained_store.model_uri)
    data = load_dataset(DATA_PATH)
    assert list(model.classes_) == list(SPECIES)
    proba = model.predict_proba(data[list(FEATURES)].head(20))
    assert proba.shape == (20, 3)
    assert (abs(proba.sum(axis=1) - 1) < 1e-9).all()
    torgersen = data[data["island_encoded"] == 0]
    assert set(model.predict(torgersen[list(FEATURES)])) == {"Adelie"}


def test_best_breaks_ties_toward_the_simpler_model():
    models = candidates()
    equal = {"accuracy": 1.0, "f1_macro": 1.0, "cv_accuracy_mean": 0.99}
    results = [Result(c, "run", "uri", dict(equal), None) for c in models]
    assert pick_best(results).candidate.name == "logistic_regression"
    results[2].metrics["accuracy"] = 1.0001  # a real lead wins over simplicity
    assert pick_best(results).candidate.name == models[2].name


def _weak_result(split_) -> Result:
    """Log a model that always says the majority species, as a clearly worse candidate."""
    weak = Pipeline([("model", DummyClassifier(strategy="most_frequent"))])
    weak.fit(split_.x_train, split_.y_train)
    with mlflow.start_run(run_name="weak") as run:
        info = mlflow.sklearn.log_model(weak, name="model", serialization_format="skops")
    accuracy = (weak.predict(split_.x_test) == split_.y_test).mean()
    metrics = {"accuracy": accuracy, "f1_macro": 0.0, "cv_accuracy_mean": 0.0}
    return Result(candidates()[0], run.info.run_id, info.model_uri, metrics, weak)


def test_guard_keeps_a_better_champion_and_force_moves_it(tmp_path):
    store = train_into(tmp_path / "guard")
    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    before = str(client.get_model_version_by_alias(store.model_name, store.alias).version)
    split_ = split(load_dataset(DATA_PATH))
    with using_store(store.tracking_uri):
        weak = _weak_result(split_)
        kept = promote(client, weak, split_, store.model_name, store.alias, force=False)
    assert not kept.moved
    assert "scores better" in kept.reason
    assert str(client.get_model_version_by_alias(store.model_name, store.alias).version) == before
    assert client.get_model_version(store.model_name, kept.version).tags["promotion"] == "kept"

    with using_store(store.tracking_uri):
        forced = promote(client, weak, split_, store.model_name, store.alias, force=True)
    assert forced.moved
    champion = client.get_model_version_by_alias(store.model_name, store.alias)
    assert str(champion.version) == forced.version


def test_second_training_run_registers_a_new_version(tmp_path, caplog):
    store = train_into(tmp_path / "twice")
    caplog.clear()
    with caplog.at_level("INFO"):
        train_into(tmp_path / "twice")
    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    versions = client.search_model_versions(f"name='{store.model_name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    # Same data, same seed: the new version scores the same, so the alias moves to it.
    assert str(client.get_model_version_by_alias(store.model_name, store.alias).version) == "2"
    assert "moved to it" in caplog.text
    assert "selection rule" in caplog.text


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
    code = modelling.main(["--data", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert code == 2
    assert message in caplog.text
    assert "Traceback" not in capsys.readouterr().err


def test_unreachable_tracking_server_exits_with_one_clear_line(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    assert modelling.main(["--tracking-uri", uri]) == 2
    assert f"cannot use tracking store {uri}" in caplog.text


def test_training_leaves_the_global_store_as_it_was(tmp_path):
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    train_into(tmp_path / "scoped")
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before


def test_help_names_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        modelling.parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--data", "--force", "--tracking-uri"):
        assert flag in out
