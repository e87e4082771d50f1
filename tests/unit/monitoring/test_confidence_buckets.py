"""The confidence histogram's buckets: the dashboard's quantiles must read true values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from penguins.features import FEATURES
from penguins.serving.metrics import CONFIDENCE_BUCKETS
from penguins.traffic.inputs import sample_inputs
from penguins.training.candidates import candidates
from penguins.training.evaluation import split
from tests.support.monitoring import histogram_quantile

# How far the Prediction confidence panel's p5 and median may read from the truth: the
# models' confidences sit between 0.8 and 1.0, so 0.005 is a tenth of that spread's tail.
TOLERANCE = 0.005


@pytest.fixture(scope="module")
def inputs(data: pd.DataFrame) -> pd.DataFrame:
    """Return realistic inputs: rows of the data set with measurement noise, as traffic sends."""
    return sample_inputs(data, 5000, np.random.default_rng(9))[list(FEATURES)]


def test_histogram_quantile_reads_as_prometheus_does():
    values = [0.5] * 10 + [0.75] * 10  # 10 in (0, 0.5], 10 in (0.5, 1]
    assert histogram_quantile(0.25, (0.5, 1.0), values) == pytest.approx(0.25)
    assert histogram_quantile(0.75, (0.5, 1.0), values) == pytest.approx(0.75)
    assert histogram_quantile(0.5, (0.5,), [0.2, 0.9]) == 0.5  # rank in +Inf: the last bound


@pytest.fixture(scope="module", params=candidates(), ids=lambda c: c.name)
def confidences(request, data: pd.DataFrame, inputs: pd.DataFrame) -> np.ndarray:
    """Return a candidate's confidences on the inputs, fitted on the training split."""
    training = split(data)
    model = request.param.build().fit(training.x_train, training.y_train)
    return model.predict_proba(inputs).max(axis=1)


@pytest.mark.parametrize("q", [0.05, 0.5])
def test_the_panels_quantiles_of_confidence_are_close_to_the_true_ones(confidences, q):
    true = float(np.quantile(confidences, q))
    read = histogram_quantile(q, CONFIDENCE_BUCKETS, confidences)
    assert read == pytest.approx(true, abs=TOLERANCE), (q, read, true)
