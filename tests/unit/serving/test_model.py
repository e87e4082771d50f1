"""The served model without a store: frames, the smoke test, the fast path fallback, URIs."""

from __future__ import annotations

import numpy as np
import pytest

from penguins.features import FEATURES, SPECIES
from penguins.registry import ModelDescription, ModelPointer
from penguins.serving.model import (
    ModelLoadError,
    ServedModel,
    fast_predictor,
    smoke_rows,
    smoke_test,
    to_frame,
)
from tests.support.samples import SAMPLE

SAMPLE_ROW = (39.1, 18.7, 181.0, 3750.0, 0, 1)


class FakeModel:
    """A stand-in pipeline whose classes and probabilities a test chooses."""

    def __init__(self, classes=SPECIES, proba=None, error=None) -> None:
        """Answer ``proba`` for every row, or raise ``error``."""
        self.classes_ = np.array(classes)
        self._proba = proba if proba is not None else [0.2, 0.3, 0.5]
        self._error = error

    def predict_proba(self, frame):
        """Return the chosen probabilities, one row per input row."""
        if self._error:
            raise self._error
        return np.array([self._proba] * len(frame))


def test_to_frame_keeps_training_names_and_types():
    frame = to_frame([tuple(SAMPLE.values()), tuple(SAMPLE.values())])
    assert list(frame.columns) == list(FEATURES)
    assert [str(t) for t in frame.dtypes] == ["float64"] * 4 + ["int64"] * 2
    assert len(frame) == 2


def test_smoke_rows_cover_every_species():
    rows = smoke_rows()
    assert len(rows) == len(SPECIES)
    assert all(len(row) == len(FEATURES) for row in rows)


def test_smoke_test_returns_the_species_column_order():
    shuffled = FakeModel(classes=("Gentoo", "Adelie", "Chinstrap"))
    assert smoke_test(shuffled, smoke_rows()) == (1, 2, 0)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (FakeModel(classes=("Adelie", "Gentoo")), "classes"),
        (FakeModel(classes=("cat", "dog", "Gentoo")), "classes"),
        (FakeModel(proba=[0.5, 0.5, 0.5]), "summing to 1"),
        (FakeModel(proba=[np.nan, 0.5, 0.5]), "summing to 1"),
        (FakeModel(proba=[0.5, 0.5]), "shape"),
        (FakeModel(error=ValueError("columns missing")), "failed to predict"),
        (object(), "classes"),
    ],
    ids=["two classes", "wrong classes", "sum", "nan", "shape", "raises", "not a model"],
)
def test_smoke_test_rejects_what_cannot_serve(model, message):
    with pytest.raises(ModelLoadError, match=message):
        smoke_test(model, smoke_rows())


def test_a_model_that_fails_the_smoke_test_is_not_built():
    description = ModelDescription.unregistered("runs:/abc/model")
    with pytest.raises(ModelLoadError, match="summing to 1"):
        ServedModel.build(FakeModel(proba=[0.5, 0.5, 0.5]), description, "runs:/abc/model")


@pytest.mark.parametrize(
    ("uri", "alias"),
    [
        ("models:/penguins-classifier@champion", "champion"),
        ("models:/penguins-classifier@challenger", "challenger"),
        ("models:/penguins-classifier/3", None),
        ("runs:/abc/model", None),
        ("/srv/models/penguins", None),
    ],
)
def test_only_alias_uris_follow_the_registry(uri, alias):
    assert ModelPointer(uri, "sqlite:///x.db").alias == alias


def test_a_pipeline_the_fast_path_cannot_mirror_is_served_by_scikit_learn():
    model = FakeModel()
    assert fast_predictor(model) is None
    served = ServedModel(model, None, "uri", None, (0, 1, 2), fast_predictor(model))
    assert served.predict_proba([SAMPLE_ROW]).tolist() == [[0.2, 0.3, 0.5]]


def test_a_model_outside_the_registry_is_named_after_its_final_step(fitted):
    pipeline = fitted["logistic_regression"]
    uri = "runs:/abc/model"
    served = ServedModel.build(pipeline, ModelDescription.unregistered(uri), uri)
    assert (served.version, served.algorithm) == ("unregistered", "LogisticRegression")
    assert served.uri == uri
    assert served.description.name == uri
