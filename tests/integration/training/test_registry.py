"""The registered champion, a second training, and the alias guard, in real SQLite stores."""

from __future__ import annotations

import mlflow
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from penguins.config import DEFAULT_DATA_PATH, EXPERIMENT_NAME
from penguins.features import FEATURES, SPECIES, load_dataset
from penguins.training.candidates import candidates
from penguins.training.evaluation import Result, split
from penguins.training.promotion import promote
from penguins.training.tracking import using_store
from tests.support.stores import store_client


def test_champion_is_registered_with_signature(trained_store, client):
    version = client.get_model_version_by_alias(trained_store.model_name, trained_store.alias)
    assert version.tags["algorithm"] in {c.name for c in candidates()}
    with using_store(trained_store.tracking_uri):
        info = mlflow.models.get_model_info(trained_store.model_uri)
    assert [c.name for c in info.signature.inputs.inputs] == list(FEATURES)
    assert info.signature.inputs.input_types()[-1].name == "long"


def test_champion_predicts_the_contract_classes(trained_store):
    with using_store(trained_store.tracking_uri):
        model = mlflow.sklearn.load_model(trained_store.model_uri)
    data = load_dataset(DEFAULT_DATA_PATH)
    assert list(model.classes_) == list(SPECIES)
    proba = model.predict_proba(data[list(FEATURES)].head(20))
    assert proba.shape == (20, 3)
    assert (abs(proba.sum(axis=1) - 1) < 1e-9).all()
    torgersen = data[data["island_encoded"] == 0]
    assert set(model.predict(torgersen[list(FEATURES)])) == {"Adelie"}


def test_second_training_run_registers_a_new_version(retrained):
    assert retrained.versions == [1, 2]
    # Same data, same seed: the new version scores the same, so the alias moves to it.
    assert retrained.alias_version == "2"
    assert "moved to it" in retrained.output
    assert "selection rule" in retrained.output
    assert "training random_forest ..." in retrained.output
    assert "registered penguins-classifier version 2;" in retrained.output


def test_training_leaves_the_global_store_as_it_was(retrained):
    assert retrained.global_store_after == retrained.global_store_before


def _weak_result(split_, experiment_id: str) -> Result:
    """Log a model that always says the majority species, as a clearly worse candidate."""
    weak = Pipeline([("model", DummyClassifier(strategy="most_frequent"))])
    weak.fit(split_.x_train, split_.y_train)
    with mlflow.start_run(run_name="weak", experiment_id=experiment_id) as run:
        info = mlflow.sklearn.log_model(weak, name="model", serialization_format="skops")
    accuracy = (weak.predict(split_.x_test) == split_.y_test).mean()
    metrics = {"accuracy": accuracy, "f1_macro": 0.0, "cv_accuracy_mean": 0.0}
    return Result(candidates()[0], run.info.run_id, info.model_uri, metrics, weak)


def test_guard_keeps_a_better_champion_and_force_moves_it(retrained):
    store = retrained.store
    client = store_client(store.tracking_uri)
    before = str(client.get_model_version_by_alias(store.model_name, store.alias).version)
    split_ = split(load_dataset(DEFAULT_DATA_PATH))
    experiment_id = client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    with using_store(store.tracking_uri):
        weak = _weak_result(split_, experiment_id)
        kept = promote(client, weak, split_, store.model_name, store.alias, force=False)
    assert not kept.moved
    assert "scores better" in kept.reason
    assert kept.previous_version == before
    assert str(client.get_model_version_by_alias(store.model_name, store.alias).version) == before
    assert client.get_model_version(store.model_name, kept.version).tags["promotion"] == "kept"

    with using_store(store.tracking_uri):
        forced = promote(client, weak, split_, store.model_name, store.alias, force=True)
    assert forced.moved
    champion = client.get_model_version_by_alias(store.model_name, store.alias)
    assert str(champion.version) == forced.version
    assert client.get_model_version(store.model_name, forced.version).tags["promotion"] == (
        "promoted"
    )
