"""MLflow tracking: one run per candidate with its scores, data, pictures and logged model."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema
from sklearn.pipeline import Pipeline

from penguins.config import EXPERIMENT_NAME, PROJECT_DIR, redact_uri, sqlite_path
from penguins.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET
from penguins.registry import ALGORITHM_TAG, REFERENCE_ARTIFACT
from penguins.training.candidates import SEED, Candidate, candidates
from penguins.training.evaluation import (
    CV_FOLDS,
    TEST_SIZE,
    Result,
    Split,
    fit_and_evaluate,
    split,
)
from penguins.training.report import confusion_png

# ---- what ties a run to its inputs ----------------------------------------------------


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file, to tie each run to the exact data it saw."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_commit() -> str | None:
    """Return the project's git commit, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_tags(data: pd.DataFrame, data_path: Path) -> dict[str, str]:
    """Return the tags every run of one training carries: the data's hash and size, the commit."""
    tags = {"data_sha256": file_sha256(data_path), "data_rows": str(len(data))}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


# ---- the logged model -----------------------------------------------------------------


def signature() -> ModelSignature:
    """Declare the model's input and output schema from the feature contract.

    Declared rather than inferred, so the types are the contract's (numbers as
    doubles, codes as longs) whatever sample the training happened to see.
    """
    inputs = [ColSpec("double", name) for name in NUMERIC_FEATURES]
    inputs += [ColSpec("long", name) for name in CATEGORICAL_FEATURES]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("string")]))


def pip_requirements() -> list[str]:
    """Pin what the logged model needs, so MLflow need not infer it (slow) at log time."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"skops=={skops.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
    ]


def trusted_types(model: Pipeline) -> list[str]:
    """Return the types skops does not trust by default that this fitted model holds.

    They are the scikit-learn classes of our own pipeline (a random forest's tree
    type among them); anything outside scikit-learn and numpy is refused.
    """
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    if foreign:
        raise RuntimeError(f"model holds types outside scikit-learn: {foreign}")
    return untrusted


def _log_model(model: Pipeline, example: pd.DataFrame) -> ModelInfo:
    """Log the fitted pipeline in skops format with its signature and an input example."""
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature(),
        input_example=example,
        pip_requirements=pip_requirements(),
        serialization_format="skops",
        skops_trusted_types=trusted_types(model),
    )


# ---- one run --------------------------------------------------------------------------


@contextlib.contextmanager
def _known_mlflow_warnings() -> Iterator[None]:
    """Silence, here only, two MLflow warnings that do not apply to this data.

    MLflow 3.17 registers its local-file source class twice and then warns that any
    path is ambiguous between the two identical candidates; and it hints that integer
    columns cannot hold missing values, which ours never do (the API rejects them).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="The specified dataset source can be interpreted",
            category=UserWarning,
        )
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
        )
        yield


def _log_datasets(split_: Split, data_path: Path) -> None:
    """Log the training and test parts as the run's input datasets."""
    source = resolve_dataset_source(str(data_path.resolve()))
    for context, frame in (("training", split_.training), ("testing", split_.testing)):
        dataset = mlflow.data.from_pandas(
            frame, source=source, name=f"penguins-{context}", targets=TARGET
        )
        mlflow.log_input(dataset, context=context)


def _log_files(model: Pipeline, split_: Split, title: str) -> None:
    """Log the test-set confusion matrix and the training part, which drift is measured against."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "confusion_matrix.png"
        mlflow.log_artifact(str(confusion_png(model, split_.x_test, split_.y_test, title, out)))
        reference = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        split_.training.to_csv(reference, index=False)
        mlflow.log_artifact(str(reference), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))


def train_one(candidate: Candidate, split_: Split, data_path: Path, tags: dict[str, str]) -> Result:
    """Fit, evaluate and log one candidate as its own MLflow run."""
    with _known_mlflow_warnings(), mlflow.start_run(run_name=candidate.name, tags=tags) as run:
        model, metrics = fit_and_evaluate(candidate, split_)
        mlflow.log_params({ALGORITHM_TAG: candidate.name, **candidate.params})
        mlflow.log_params({"test_size": TEST_SIZE, "cv_folds": CV_FOLDS, "seed": SEED})
        mlflow.log_metrics(metrics)
        _log_datasets(split_, data_path)
        _log_files(model, split_, candidate.name)
        info = _log_model(model, split_.x_train.head(3))
    return Result(candidate, run.info.run_id, info.model_uri, metrics, model)


# ---- the store ------------------------------------------------------------------------


def artifact_root(tracking_uri: str) -> str | None:
    """Return where a SQLite store's artifacts go: ``mlartifacts/`` beside the database.

    MLflow would otherwise put them under ``./mlruns`` of whatever directory the
    script ran from; beside the database they are found from anywhere.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return None  # a tracking server decides for itself
    return (path.resolve().parent / "mlartifacts").as_uri()


def ensure_experiment(tracking_uri: str) -> None:
    """Create the experiment with its artifact root if it does not exist yet."""
    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
        client.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root(tracking_uri))


# MLflow prints a link to each run on a tracking server, made from the tracking URI.
HIDE_RUN_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


@contextlib.contextmanager
def _run_links_hidden(hidden: bool) -> Iterator[None]:
    """Keep MLflow from printing run links in the block when ``hidden``; restore after."""
    before = os.environ.get(HIDE_RUN_LINKS)
    if hidden:
        os.environ[HIDE_RUN_LINKS] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HIDE_RUN_LINKS, None)
        else:
            os.environ[HIDE_RUN_LINKS] = before


@contextlib.contextmanager
def using_store(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at one store for the block, then restore what was set.

    Callers such as tests run training in-process; leaving the store set would send
    their later registry calls to it. MLflow's run links would show a password that
    the URI carries, so with one they are left out.
    """
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        with _run_links_hidden(redact_uri(tracking_uri) != tracking_uri):
            yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def train_all(
    data: pd.DataFrame, data_path: Path, tracking_uri: str, progress: Callable[[str], None]
) -> tuple[list[Result], Split]:
    """Train every candidate on one shared split, each tracked as an MLflow run."""
    ensure_experiment(tracking_uri)
    mlflow.set_experiment(EXPERIMENT_NAME)
    split_ = split(data)
    tags = run_tags(data, data_path)
    results = []
    for candidate in candidates():
        progress(f"training {candidate.name} ...")
        results.append(train_one(candidate, split_, data_path, tags))
    return results, split_
