"""The API's metrics, read from the app's own registry with get_sample_value."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from penguins.features import SPECIES
from penguins.registry import ModelDescription
from penguins.serving.metrics import (
    ServingMetrics,
    WrittenFilesCollector,
    method_label,
    observe_many,
)
from tests.support.samples import GENTOO, SAMPLE


def requests_total(registry, endpoint: str, status: str, method: str = "POST") -> float | None:
    """Return one ml_requests_total series."""
    labels = {"method": method, "endpoint": endpoint, "status": status}
    return registry.get_sample_value("ml_requests_total", labels)


def describe(version: str, accuracy: float = 0.9, algorithm: str = "svm") -> ModelDescription:
    """Return a model description for the gauges."""
    metrics = {"accuracy": accuracy}
    return ModelDescription(
        "penguins-classifier", version, "champion", f"run{version}", algorithm, metrics
    )


def test_request_and_reload_series_exist_from_the_start(app, registry):
    for endpoint in ("/predict", "/predict/batch", "/feedback", "/health", "/metrics"):
        method = "GET" if endpoint in ("/health", "/metrics") else "POST"
        assert requests_total(registry, endpoint, "200", method) == 0
    for result in ("success", "failed"):
        assert registry.get_sample_value("ml_model_reloads_total", {"result": result}) == 0


def test_a_served_version_has_its_series_from_the_start():
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    metrics.model_served(describe("1", 0.97), None)
    get = registry.get_sample_value
    for species in SPECIES:
        labels = {"model": "svm", "version": "1", "species": species}
        assert get("ml_predictions_total", labels) == 0
    for outcome in ("correct", "incorrect"):
        labels = {"model": "svm", "version": "1", "outcome": outcome}
        assert get("ml_feedback_total", labels) == 0
    assert get("ml_prediction_confidence_count", {"model": "svm"}) == 0
    assert get("ml_model_info", {"model": "svm", "version": "1", "run_id": "run1"}) == 1
    assert get("ml_model_accuracy", {"model": "svm", "version": "1"}) == 0.97


def test_requests_are_counted_by_route_template_and_status(client, registry):
    for _ in range(3):
        client.post("/predict", json=SAMPLE)
    client.post("/predict", json={})
    client.get("/predict")
    client.get("/no/such/path")
    client.get(f"/no/such/path/{uuid.uuid4()}")
    assert requests_total(registry, "/predict", "200") == 3
    assert requests_total(registry, "/predict", "422") == 1
    assert requests_total(registry, "/predict", "405", "GET") == 1
    assert requests_total(registry, "other", "404", "GET") == 2
    count = registry.get_sample_value(
        "ml_request_duration_seconds_count", {"method": "POST", "endpoint": "/predict"}
    )
    assert count == 4


def test_unknown_methods_share_one_label(client, registry):
    client.open("/predict", method="BREW")
    assert requests_total(registry, "/predict", "405", "other") == 1
    assert method_label("BREW") == "other" and method_label("GET") == "GET"


def test_predictions_confidence_and_batch_size(client, registry, metrics, served_model):
    algorithm = served_model.algorithm
    metrics.model_served(served_model.description, None)  # what the model manager does
    client.post("/predict", json=SAMPLE)
    client.post("/predict/batch", json={"samples": [SAMPLE, GENTOO, GENTOO]})

    def predicted(species):
        labels = {"model": algorithm, "version": "1", "species": species}
        return registry.get_sample_value("ml_predictions_total", labels)

    assert (predicted("Adelie"), predicted("Gentoo"), predicted("Chinstrap")) == (2, 2, 0)
    conf = registry.get_sample_value("ml_prediction_confidence_count", {"model": algorithm})
    assert conf == 4
    assert registry.get_sample_value("ml_batch_size_count") == 1
    assert registry.get_sample_value("ml_batch_size_sum") == 3


def test_feedback_is_counted_by_outcome(client, registry, served_model):
    algorithm = served_model.algorithm
    for actual in ("Adelie", "Adelie", "Gentoo"):
        pid = client.post("/predict", json=SAMPLE).json["prediction_id"]
        client.post("/feedback", json={"prediction_id": pid, "actual_species": actual})

    def outcome(name):
        labels = {"model": algorithm, "version": "1", "outcome": name}
        return registry.get_sample_value("ml_feedback_total", labels)

    assert (outcome("correct"), outcome("incorrect")) == (2, 1)


def test_a_labelled_prediction_is_counted_once_by_its_first_label(client, registry, served_model):
    pid = client.post("/predict", json=SAMPLE).json["prediction_id"]
    answers = [
        client.post("/feedback", json={"prediction_id": pid, "actual_species": actual}).json
        for actual in ("Gentoo", "Adelie", "Adelie")
    ]
    assert [a["correct"] for a in answers] == [False, True, True]
    labels = {"model": served_model.algorithm, "version": "1"}

    def count(name, **extra):
        return registry.get_sample_value(name, {**labels, **extra})

    assert count("ml_feedback_total", outcome="incorrect") == 1  # the first label
    assert not count("ml_feedback_total", outcome="correct")
    assert count("ml_feedback_corrections_total") == 2


def test_unknown_feedback_is_not_counted(client, registry, served_model):
    body = {"prediction_id": str(uuid.uuid4()), "actual_species": "Adelie"}
    assert client.post("/feedback", json=body).status_code == 404
    for name in ("correct", "incorrect"):
        labels = {"model": served_model.algorithm, "version": "1", "outcome": name}
        assert not registry.get_sample_value("ml_feedback_total", labels)


def test_a_swap_retires_the_old_versions_gauges():
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    metrics.model_served(describe("1", 0.97), None)
    metrics.model_served(describe("2", 0.99, "random_forest"), describe("1", 0.97))
    get = registry.get_sample_value
    assert get("ml_model_info", {"model": "svm", "version": "1", "run_id": "run1"}) == 0
    assert get("ml_model_accuracy", {"model": "svm", "version": "1"}) == 0
    new_info = {"model": "random_forest", "version": "2", "run_id": "run2"}
    assert get("ml_model_info", new_info) == 1
    assert get("ml_model_accuracy", {"model": "random_forest", "version": "2"}) == 0.99


def test_reloads_are_counted_by_result():
    metrics = ServingMetrics(CollectorRegistry())
    metrics.observe_reload("success")
    metrics.observe_reload("failed")
    metrics.observe_reload("failed")
    get = metrics.registry.get_sample_value
    assert get("ml_model_reloads_total", {"result": "success"}) == 1
    assert get("ml_model_reloads_total", {"result": "failed"}) == 2


def test_metrics_route_serves_parseable_text(client, metrics, served_model):
    metrics.model_served(served_model.description, None)  # what the model manager does
    client.post("/predict", json=SAMPLE)
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(resp.text)}
    expected = {
        "ml_requests",
        "ml_request_duration_seconds",
        "ml_predictions",
        "ml_model_accuracy",
        "ml_model_info",
        "ml_prediction_confidence",
        "ml_batch_size",
        "ml_feedback",
        "ml_model_reloads",
    }
    assert expected <= names


def test_multiprocess_mode_refuses_a_late_environment_variable(monkeypatch, tmp_path):
    """The value store is chosen at import; setting the variable later would lose counts."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        ServingMetrics()


def test_a_new_workers_empty_metric_file_does_not_break_the_scrape(tmp_path):
    """A worker's file is empty for a moment after it is created; a scrape then must work."""
    values = tmp_path / "counter_1.db"
    writer = MmapedDict(str(values))
    key = mmap_key("ml_feedback", "ml_feedback_total", [], [], "feedback")
    writer.write_value(key, 3.0, 0.0)
    writer.close()
    (tmp_path / "counter_424242.db").touch()  # just created, nothing written yet
    registry = CollectorRegistry()
    registry.register(WrittenFilesCollector(str(tmp_path)))
    assert registry.get_sample_value("ml_feedback_total") == 3.0


@pytest.mark.parametrize("mode", ["single process", "multiprocess"])
def test_bulk_observe_writes_what_observe_writes_value_by_value(mode, tmp_path, monkeypatch):
    """Pin observe_many to this prometheus_client's own observe(), in both value modes."""
    if mode == "multiprocess":
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: 4242))
    rng = np.random.default_rng(7)
    bounds = (0.4, 0.5, 0.9, 0.95, 0.99, 1.0)
    amounts = [*rng.uniform(0.33, 1.0, 5000), *bounds, 0.0, 1.0, 0.95]  # edges land as observe's
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("c", "per value", ["model"], buckets=bounds, registry=one).labels("svm")
    by_many = Histogram("c", "in bulk", ["model"], buckets=bounds, registry=many).labels("svm")
    for amount in amounts:
        by_one.observe(amount)
    observe_many(by_many, amounts[:2500])
    observe_many(by_many, amounts[2500:])
    observe_many(by_many, [])
    for bound in (*bounds, float("inf")):
        le = {"model": "svm", "le": str(bound) if bound != float("inf") else "+Inf"}
        assert many.get_sample_value("c_bucket", le) == one.get_sample_value("c_bucket", le)
    count = {"model": "svm"}
    assert many.get_sample_value("c_count", count) == len(amounts)
    assert many.get_sample_value("c_sum", count) == pytest.approx(
        one.get_sample_value("c_sum", count), rel=1e-12
    )
    assert bool(list(tmp_path.glob("histogram_*.db"))) == (mode == "multiprocess")
