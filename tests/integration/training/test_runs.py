"""One MLflow run per candidate in the session's store, checked through MlflowClient."""

from __future__ import annotations

from penguins.registry import REFERENCE_ARTIFACT

METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
        assert fh.read(8) == PNG_MAGIC
