"""A minimal BentoML service on the champion's MLflow model folder, for the benchmark.

Started by bench/peers.py as ``bentoml serve bento_service:Penguins`` from this folder,
in the BentoML virtualenv that bench/peers/bentoml.txt pins. The model folder comes in
``PENGUINS_MODEL_DIR``; the worker count in ``PENGUINS_WORKERS`` (the decorator reads it
when BentoML imports this file, so both settings are the bench's, not a user's default).
"""

from __future__ import annotations

import os

import bentoml
import pandas as pd

FEATURES = (
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "island_encoded",
    "sex_encoded",
)


@bentoml.service(workers=int(os.environ.get("PENGUINS_WORKERS", "1")))
class Penguins:
    """The champion's scikit-learn pipeline behind one API."""

    def __init__(self) -> None:
        """Load the pipeline from the model folder, as mlflow.sklearn saved it."""
        import mlflow.sklearn

        self.model = mlflow.sklearn.load_model(os.environ["PENGUINS_MODEL_DIR"])

    @bentoml.api
    def predict(self, records: list[dict[str, int | float]]) -> list[str]:
        """Return the predicted species of each record, in order."""
        frame = pd.DataFrame.from_records(records, columns=list(FEATURES))
        return [str(species) for species in self.model.predict(frame)]
