"""The candidates are complete pipelines: raw feature rows in, the contract's species out."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from penguins.features import FEATURES, SPECIES
from penguins.training.candidates import SEED, candidates

NAMES = [c.name for c in candidates()]


def test_three_candidates_simplest_first():
    models = candidates()
    assert NAMES == ["logistic_regression", "svm", "random_forest"]
    assert [c.complexity for c in models] == [0, 1, 2]


def test_each_build_is_a_fresh_pipeline_with_its_preprocessing():
    for candidate in candidates():
        first, second = candidate.build(), candidate.build()
        assert isinstance(first, Pipeline) and first is not second
        assert [name for name, _ in first.steps] == ["preprocess", "model"]


def test_random_parts_are_seeded():
    params = {c.name: c.params for c in candidates()}
    assert params["random_forest"]["random_state"] == SEED
    svm = candidates()[1].build().named_steps["model"].estimator
    assert svm.random_state == SEED


@pytest.mark.parametrize("name", NAMES)
def test_fitted_candidate_predicts_the_contract_classes(fitted, data, name):
    model = fitted[name]
    assert list(model.classes_) == list(SPECIES)
    proba = model.predict_proba(data[list(FEATURES)].head(20))
    assert proba.shape == (20, 3)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-9)
    torgersen = data[data["island_encoded"] == 0]
    assert set(model.predict(torgersen[list(FEATURES)])) == {"Adelie"}


def test_same_seed_same_forest(parts, fitted):
    again = candidates()[2].build().fit(parts.x_train, parts.y_train)
    expected = fitted["random_forest"].predict_proba(parts.x_test)
    assert np.array_equal(again.predict_proba(parts.x_test), expected)
