"""One shared stratified split, the scores of a candidate, and the rule that picks the best."""

from __future__ import annotations

from penguins.features import FEATURES, TARGET
from penguins.training.candidates import candidates
from penguins.training.evaluation import (
    SELECTION_RULE,
    TEST_SIZE,
    Result,
    fit_and_evaluate,
    pick_best,
    score,
    split,
)

METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")


def test_split_is_stratified_and_repeatable(data, parts):
    again = split(data)
    assert again.x_test.index.equals(parts.x_test.index)
    assert len(parts.x_test) == round(len(data) * TEST_SIZE)
    assert list(parts.x_train.columns) == list(FEATURES)
    shares = data[TARGET].value_counts(normalize=True)
    test_shares = parts.y_test.value_counts(normalize=True)
    assert (abs(test_shares - shares) < 0.02).all()


def test_parts_as_tables_carry_the_species(parts):
    assert list(parts.training.columns) == [*FEATURES, TARGET]
    assert parts.training[TARGET].equals(parts.y_train)
    assert parts.testing[TARGET].equals(parts.y_test)


def test_score_names_the_four_test_metrics(parts, fitted):
    scores = score(fitted["logistic_regression"], parts.x_test, parts.y_test)
    assert tuple(scores) == METRICS
    assert all(0.8 <= v <= 1.0 for v in scores.values())


def test_fit_and_evaluate_gives_test_and_cv_metrics(parts):
    # The cheapest candidate: every candidate's logged metrics are checked on real runs.
    model, metrics = fit_and_evaluate(candidates()[0], parts)
    for name in (*METRICS, "cv_accuracy_mean", "cv_accuracy_std", "fit_time_seconds"):
        assert name in metrics, name
    for name in (*METRICS, "cv_accuracy_mean"):
        assert 0.8 <= metrics[name] <= 1.0, (name, metrics[name])
    assert metrics["accuracy"] == score(model, parts.x_test, parts.y_test)["accuracy"]


def _results(**metrics: float) -> list[Result]:
    """Return one result per candidate, all with the same metrics."""
    return [Result(c, "run", "uri", dict(metrics), None) for c in candidates()]


def test_best_breaks_ties_toward_the_simpler_model():
    results = _results(accuracy=1.0, f1_macro=1.0, cv_accuracy_mean=0.99)
    assert pick_best(results).candidate.name == "logistic_regression"
    results[2].metrics["accuracy"] = 1.0001  # a real lead wins over simplicity
    assert pick_best(results).candidate.name == "random_forest"


def test_differences_below_four_decimals_are_ties():
    results = _results(accuracy=0.99, f1_macro=0.98, cv_accuracy_mean=0.97)
    results[1].metrics["accuracy"] = 0.99004
    assert pick_best(results).candidate.name == "logistic_regression"


def test_rule_orders_accuracy_then_f1_then_cv():
    results = _results(accuracy=0.99, f1_macro=0.98, cv_accuracy_mean=0.97)
    results[2].metrics["cv_accuracy_mean"] = 0.98
    assert pick_best(results).candidate.name == "random_forest"
    results[1].metrics["f1_macro"] = 0.99  # f1 counts before CV accuracy
    assert pick_best(results).candidate.name == "svm"
    results[0].metrics["accuracy"] = 0.995  # accuracy counts before f1
    assert pick_best(results).candidate.name == "logistic_regression"
    assert SELECTION_RULE.startswith("highest test accuracy, then test f1_macro")
