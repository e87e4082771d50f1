"""What a training run shows: the comparison table, the decision line, the confusion matrix."""

from __future__ import annotations

from penguins.training.candidates import candidates
from penguins.training.evaluation import Result
from penguins.training.promotion import Promotion
from penguins.training.report import comparison_table, confusion_png, promotion_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(index: int, accuracy: float) -> Result:
    """Return a result of one candidate with every table column set."""
    metrics = {
        "accuracy": accuracy,
        "f1_macro": 0.5,
        "precision_macro": 0.25,
        "recall_macro": 0.125,
        "cv_accuracy_mean": 0.75,
        "fit_time_seconds": 0.0123,
    }
    return Result(candidates()[index], "run", "uri", metrics, None)


def test_table_lists_every_candidate_and_marks_the_best():
    results = [_result(0, 0.9), _result(1, 1.0)]
    lines = comparison_table(results, results[1]).splitlines()
    assert lines[0].split() == [
        "model",
        "accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
        "cv_accuracy_mean",
        "fit_s",
    ]
    assert set(lines[1].strip()) == {"-"}
    assert len(lines[1]) == len(lines[0])
    assert lines[2].startswith("  logistic_regression")
    assert lines[3].startswith("* svm")
    assert lines[3].split()[2:] == ["1.0000", "0.5000", "0.2500", "0.1250", "0.7500", "0.012"]
    assert all(len(line) == len(lines[0]) for line in lines)


def test_summary_says_where_the_alias_went_and_why():
    moved = Promotion("2", True, "no champion yet", None)
    assert promotion_summary(moved, "penguins-classifier", "champion") == (
        "registered penguins-classifier version 2; alias 'champion' moved to it: no champion yet"
    )
    kept = Promotion("3", False, "current champion v2 scores better", "2")
    assert "alias 'champion' stays off it: current champion v2" in promotion_summary(
        kept, "penguins-classifier", "champion"
    )


def test_confusion_matrix_is_a_png(parts, fitted, tmp_path):
    out = confusion_png(
        fitted["svm"], parts.x_test, parts.y_test, "svm", tmp_path / "confusion_matrix.png"
    )
    assert out == tmp_path / "confusion_matrix.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
