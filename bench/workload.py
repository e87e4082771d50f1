"""What the benchmark sends: real rows of the data set, as frames, arrays and JSON bodies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from penguins.config import DEFAULT_DATA_PATH
from penguins.features import CATEGORICAL_FEATURES, FEATURES, load_dataset


def rows(n: int) -> pd.DataFrame:
    """Return ``n`` rows of the six features, cycling through the cleaned data set."""
    data = load_dataset(DEFAULT_DATA_PATH)[list(FEATURES)]
    index = np.arange(n) % len(data)
    return data.iloc[index].reset_index(drop=True)


def records(frame: pd.DataFrame) -> list[dict[str, float | int]]:
    """Return the rows as JSON-ready dicts, codes as integers as the contract says."""
    out = []
    for row in frame.itertuples(index=False):
        sample = dict(zip(FEATURES, row, strict=True))
        out.append(
            {k: int(v) if k in CATEGORICAL_FEATURES else float(v) for k, v in sample.items()}
        )
    return out


def ours_one(frame: pd.DataFrame) -> str:
    """Return the body of a one-row POST /predict on our API."""
    return json.dumps(records(frame.head(1))[0])


def ours_batch(frame: pd.DataFrame) -> str:
    """Return the body of POST /predict/batch on our API."""
    return json.dumps({"samples": records(frame)})


def mlflow_body(frame: pd.DataFrame) -> str:
    """Return the body of POST /invocations on `mlflow models serve`."""
    return json.dumps({"dataframe_records": records(frame)})
