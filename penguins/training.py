"""Train the three candidate models, track them in MLflow and promote the best."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the picture is only written to a file

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
import skops  # noqa: E402
import skops.io  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.data.dataset_source_registry import resolve_dataset_source  # noqa: E402
from mlflow.models import ModelSignature  # noqa: E402
from mlflow.types import ColSpec, Schema  # noqa: E402
from sklearn.base import ClassifierMixin  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from penguins.config import EXPERIMENT_NAME, PROJECT_DIR  # noqa: E402
from penguins.features import (  # noqa: E402
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    SPECIES,
    TARGET,
)
from penguins.registry import (  # noqa: E402
    ALGORITHM_TAG,
    REFERENCE_ARTIFACT,
    get_alias_version,
)

log = logging.getLogger(__name__)

SEED = 42
TEST_SIZE = 0.2
CV_FOLDS = 5
# The selection rule, in order: test accuracy, then test f1_macro, then CV accuracy
# mean; a remaining tie goes to the simpler, faster model (lower complexity rank).
SELECTION_RULE = (
    "highest test accuracy, then test f1_macro, then CV accuracy mean (4 decimals); "
    "ties go to the simpler model (logistic_regression < svm < random_forest)"
)


@dataclass(frozen=True)
class Candidate:
    """One algorithm to train: its name, how to build its estimator, its complexity rank."""

    name: str
    build: Callable[[], ClassifierMixin]
    params: dict
    complexity: int


def _preprocessor(scale: bool) -> ColumnTransformer:
    """One-hot the codes (islands are not ordered); scale numbers where the model needs it."""
    numeric = StandardScaler() if scale else "passthrough"
    return ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_FEATURES)),
            ("codes", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )


def candidates() -> list[Candidate]:
    """Return the three candidate algorithms with fixed seeds."""
    rf = {"n_estimators": 100, "max_depth": 8, "random_state": SEED}
    lr = {"C": 1.0, "max_iter": 1000}
    svm = {"C": 1.0, "kernel": "rbf", "calibration": "sigmoid", "calibration_cv": 5}
    return [
        Candidate(
            "logistic_regression",
            lambda: Pipeline(
                [("preprocess", _preprocessor(True)), ("model", LogisticRegression(**lr))]
            ),
            lr,
            0,
        ),
        Candidate(
            "svm",
            # SVC(probability=True) is deprecated in scikit-learn 1.9; calibration is the
            # supported way to get probabilities, and ensemble=False keeps one SVC.
            lambda: Pipeline(
                [
                    ("preprocess", _preprocessor(True)),
                    (
                        "model",
                        CalibratedClassifierCV(
                            SVC(C=svm["C"], kernel=svm["kernel"], random_state=SEED),
                            method=svm["calibration"],
                            cv=svm["calibration_cv"],
                            ensemble=False,
                        ),
                    ),
                ]
            ),
            svm,
            1,
        ),
        Candidate(
            "random_forest",
            lambda: Pipeline(
                [
                    ("preprocess", _preprocessor(False)),
                    ("model", RandomForestClassifier(**rf)),
                ]
            ),
            rf,
            2,
        ),
    ]


@dataclass
class Result:
    """What training one candidate produced."""

    candidate: Candidate
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    model: Pipeline = field(repr=False)

    def rank_key(self) -> tuple:
        """Return the sort key of the selection rule: larger is better."""
        m = self.metrics
        return (
            round(m["accuracy"], 4),
            round(m["f1_macro"], 4),
            round(m["cv_accuracy_mean"], 4),
            -self.candidate.complexity,
        )


@dataclass
class Split:
    """The one stratified held-out split shared by all candidates."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def split(data: pd.DataFrame) -> Split:
    """Split the cleaned data into stratified train and test parts with a fixed seed."""
    x_train, x_test, y_train, y_test = train_test_split(
        data[list(FEATURES)],
        data[TARGET],
        test_size=TEST_SIZE,
        stratify=data[TARGET],
        random_state=SEED,
    )
    return Split(x_train, x_test, y_train, y_test)


def score(model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Return accuracy and the macro-averaged f1, precision and recall on one set."""
    pred = model.predict(x)
    return {
        "accuracy": accuracy_score(y, pred),
        "f1_macro": f1_score(y, pred, average="macro"),
        "precision_macro": precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": recall_score(y, pred, average="macro", zero_division=0),
    }


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


def confusion_png(model, split_: Split, title: str, out: Path) -> Path:
    """Draw the test-set confusion matrix to a PNG file."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_estimator(
        model, split_.x_test, split_.y_test, labels=list(SPECIES), ax=ax, colorbar=False
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def train_one(candidate: Candidate, split_: Split, data_path: Path, tags: dict[str, str]) -> Result:
    """Fit, evaluate and log one candidate as its own MLflow run."""
    model = candidate.build()
    cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=SEED)
    with _known_mlflow_warnings(), mlflow.start_run(run_name=candidate.name, tags=tags) as run:
        cv_scores = cross_val_score(
            candidate.build(), split_.x_train, split_.y_train, cv=cv, scoring="accuracy"
        )
        started = time.perf_counter()
        model.fit(split_.x_train, split_.y_train)
        fit_seconds = time.perf_counter() - started
        metrics = score(model, split_.x_test, split_.y_test)
        metrics |= {
            "cv_accuracy_mean": float(cv_scores.mean()),
            "cv_accuracy_std": float(cv_scores.std()),
            "fit_time_seconds": fit_seconds,
        }
        mlflow.log_params({ALGORITHM_TAG: candidate.name, **candidate.params})
        mlflow.log_params({"test_size": TEST_SIZE, "cv_folds": CV_FOLDS, "seed": SEED})
        mlflow.log_metrics(metrics)
        _log_datasets(split_, data_path)
        with tempfile.TemporaryDirectory() as tmp:
            png = confusion_png(model, split_, candidate.name, Path(tmp) / "confusion_matrix.png")
            mlflow.log_artifact(str(png))
            reference = Path(tmp) / Path(REFERENCE_ARTIFACT).name
            split_.x_train.assign(**{TARGET: split_.y_train}).to_csv(reference, index=False)
            mlflow.log_artifact(str(reference), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))
        info = _log_model(model, split_.x_train.head(3))
    return Result(candidate, run.info.run_id, info.model_uri, metrics, model)


def _log_model(model: Pipeline, example: pd.DataFrame):
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


@contextlib.contextmanager
def _known_mlflow_warnings():
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


def _data_source(data_path: Path):
    """Return the MLflow dataset source of the local data file."""
    return resolve_dataset_source(str(data_path.resolve()))


def signature() -> ModelSignature:
    """Declare the model's input and output schema from the feature contract.

    Declared rather than inferred, so the types are the contract's (numbers as
    doubles, codes as longs) whatever sample the training happened to see.
    """
    inputs = [ColSpec("double", name) for name in NUMERIC_FEATURES]
    inputs += [ColSpec("long", name) for name in CATEGORICAL_FEATURES]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("string")]))


def _log_datasets(split_: Split, data_path: Path) -> None:
    """Log the training and test parts as the run's input datasets."""
    source = _data_source(data_path)
    for context, x, y in (
        ("training", split_.x_train, split_.y_train),
        ("testing", split_.x_test, split_.y_test),
    ):
        frame = x.assign(**{TARGET: y})
        dataset = mlflow.data.from_pandas(
            frame, source=source, name=f"penguins-{context}", targets=TARGET
        )
        mlflow.log_input(dataset, context=context)


def pick_best(results: list[Result]) -> Result:
    """Return the best result by the documented selection rule."""
    return max(results, key=Result.rank_key)


@dataclass
class Promotion:
    """The outcome of registering the best model."""

    version: str
    moved: bool
    reason: str
    previous_version: str | None


def promote(
    client: MlflowClient,
    best: Result,
    split_: Split,
    model_name: str,
    alias: str,
    force: bool,
) -> Promotion:
    """Register the best model as a new version and move the alias unless the champion wins.

    The current champion is scored on this run's test split, so both are judged on
    the same rows.
    """
    current = get_alias_version(client, model_name, alias)
    current_acc = None
    if current is not None:
        champion = mlflow.sklearn.load_model(f"models:/{model_name}/{current.version}")
        current_acc = score(champion, split_.x_test, split_.y_test)["accuracy"]
    version = mlflow.register_model(
        best.model_uri,
        model_name,
        tags={
            ALGORITHM_TAG: best.candidate.name,
            "test_accuracy": f"{best.metrics['accuracy']:.4f}",
        },
    ).version
    new_acc = best.metrics["accuracy"]
    if current is None:
        moved, reason = True, f"no {alias} yet"
    elif force:
        moved, reason = True, f"--force (current {alias} v{current.version}: {current_acc:.4f})"
    elif current_acc > new_acc:
        moved = False
        reason = (
            f"current {alias} v{current.version} scores better on this test split "
            f"({current_acc:.4f} > {new_acc:.4f}); use --force to move it anyway"
        )
    else:
        moved = True
        reason = f"scores {new_acc:.4f} >= current {alias} v{current.version} ({current_acc:.4f})"
    if moved:
        client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promotion", "promoted" if moved else "kept")
    return Promotion(str(version), moved, reason, str(current.version) if current else None)


def artifact_root(tracking_uri: str) -> str | None:
    """Return where a SQLite store's artifacts go: ``mlartifacts/`` beside the database.

    MLflow would otherwise put them under ``./mlruns`` of whatever directory the
    script ran from; beside the database they are found from anywhere.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None  # a tracking server decides for itself
    return (Path(tracking_uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()


def ensure_experiment(tracking_uri: str) -> None:
    """Create the experiment with its artifact root if it does not exist yet."""
    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
        client.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root(tracking_uri))


@contextlib.contextmanager
def using_store(tracking_uri: str):
    """Point MLflow's fluent API at one store for the block, then restore what was set.

    Callers such as tests run training in-process; leaving the store set would send
    their later registry calls to it.
    """
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
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
    tags = {"data_sha256": file_sha256(data_path), "data_rows": str(len(data))}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    results = []
    for candidate in candidates():
        progress(f"training {candidate.name} ...")
        results.append(train_one(candidate, split_, data_path, tags))
    return results, split_
