"""The fast inference path gives the pipeline's answers on the whole data set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from penguins.features import FEATURES, NUMERIC_FEATURES
from penguins.registry import ModelDescription
from penguins.serving.fastpath import TOLERANCE, FastPredictor, Unsupported, verify
from penguins.serving.model import ServedModel
from penguins.training.candidates import candidates

NAMES = [c.name for c in candidates()]


@pytest.mark.parametrize("name", NAMES)
def test_fast_path_equals_the_pipeline_on_every_row(fitted, data, name):
    pipeline = fitted[name]
    fast = FastPredictor(pipeline)
    rows = data[list(FEATURES)]
    expected = pipeline.predict_proba(rows)
    got = fast.predict_proba(rows.to_numpy(dtype=float))
    assert got.shape == expected.shape == (len(data), 3)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    species = fast.classes_[got.argmax(axis=1)]
    assert (species == pipeline.predict(rows)).all()
    assert verify(fast, pipeline, data) <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_fast_path_equals_the_pipeline_row_by_row(fitted, data, name):
    """One-row requests take the per-row paths (the forest's numpy walk among them)."""
    pipeline = fitted[name]
    fast = FastPredictor(pipeline)
    rows = data[list(FEATURES)]
    expected = pipeline.predict_proba(rows)
    got = np.vstack([fast.predict_proba(row[None, :]) for row in rows.to_numpy(dtype=float)])
    assert np.max(np.abs(got - expected)) <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_every_candidate_is_served_through_the_verified_fast_path(fitted, data, name):
    pipeline = fitted[name]
    description = ModelDescription("penguins-classifier", "1", "champion", "run", name, {})
    served = ServedModel.build(pipeline, description, "models:/penguins-classifier@champion")
    assert served.fast is not None
    rows = data[list(FEATURES)]
    expected = pipeline.predict_proba(rows)[:, served.column_order]
    got = served.predict_proba([tuple(r) for r in rows.itertuples(index=False)])
    assert np.max(np.abs(got - expected)) <= TOLERANCE


def test_one_row_as_a_list(fitted):
    fast = FastPredictor(fitted["logistic_regression"])
    proba = fast.predict_proba([[39.1, 18.7, 181.0, 3750.0, 0, 1]])
    assert proba.shape == (1, 3)
    assert abs(proba.sum() - 1) < 1e-9


def test_wrong_shape_is_refused(fitted):
    with pytest.raises(ValueError, match="expected shape"):
        FastPredictor(fitted["svm"]).predict_proba([[1.0, 2.0]])


def test_unknown_transformer_is_unsupported(data):
    preprocess = ColumnTransformer([("numeric", MinMaxScaler(), list(NUMERIC_FEATURES))])
    pipeline = Pipeline([("preprocess", preprocess), ("model", LogisticRegression())])
    pipeline.fit(data[list(FEATURES)], data["species"])
    with pytest.raises(Unsupported, match="MinMaxScaler"):
        FastPredictor(pipeline)


def test_verify_catches_a_disagreement(fitted, data):
    fast = FastPredictor(fitted["logistic_regression"])
    fast.steps[0].mean = fast.steps[0].mean + 1.0  # a broken mirror of the scaler
    with pytest.raises(Unsupported, match="differs"):
        verify(fast, fitted["logistic_regression"], data)
