"""One training from start to end: data, runs, comparison, registration, the alias decision."""

from __future__ import annotations

from collections.abc import Callable

import requests
from mlflow.exceptions import MlflowException

from penguins.config import EXPERIMENT_NAME, redact_uri
from penguins.features import load_dataset
from penguins.registry import StoreError, connect, store_problem
from penguins.training.evaluation import SELECTION_RULE, pick_best
from penguins.training.promotion import Promotion, promote
from penguins.training.report import comparison_table, promotion_summary
from penguins.training.settings import TrainingSettings
from penguins.training.tracking import train_all, using_store


def train_and_promote(settings: TrainingSettings, say: Callable[[str], None]) -> Promotion:
    """Train every candidate, show how they compare, register the best and decide on the alias.

    Raises DataError when the data is unusable and StoreError when the store is, both
    checked before any training starts; a store that fails later (a tracking server
    stopped halfway) is a StoreError too, said in one line without any password.
    """
    data = load_dataset(settings.data)
    client = connect(settings.tracking_uri)
    say(f"data: {settings.data} ({len(data)} usable rows)")
    say(f"tracking: {redact_uri(settings.tracking_uri)}, experiment {EXPERIMENT_NAME!r}")
    try:
        with using_store(settings.tracking_uri):
            results, split_ = train_all(data, settings.data, settings.tracking_uri, say)
            best = pick_best(results)
            say(f"\n{comparison_table(results, best)}\n")
            say(f"selection rule: {SELECTION_RULE}")
            say(f"best: {best.candidate.name} (run {best.run_id})")
            outcome = promote(
                client, best, split_, settings.model_name, settings.alias, settings.force
            )
    except (MlflowException, requests.RequestException) as exc:
        raise StoreError(store_problem(settings.tracking_uri, exc)) from exc
    say(promotion_summary(outcome, settings.model_name, settings.alias))
    return outcome
