"""The provisioned Grafana dashboards: identity, data source, queries, units and thresholds."""

from __future__ import annotations

import re

import pytest

from tests.support.monitoring import (
    API_COUNTERS_AND_GAUGES,
    API_HISTOGRAMS,
    DASHBOARD_UIDS,
    DASHBOARDS_DIR,
    DATASOURCE,
    EXPORTER_ML_METRICS,
    EXPORTER_SYSTEM_METRICS,
    INSTANCE_PANEL_SUFFIX,
    PUBLIC_METRICS,
    SYNTHETIC_METRICS,
    alert_rules,
    dashboards,
    grouping_labels,
    instance_level,
    metric_names,
    panel_queries,
    query_panels,
    recording_rules,
)

BOARDS = dashboards()


def by_uid(uid: str) -> dict:
    """Return the dashboard with this uid."""
    return next(board for board in BOARDS.values() if board["uid"] == uid)


def panel_metrics(panel: dict) -> set[str]:
    """Return the metric names (recording rules included) a panel's queries select."""
    return set().union(*(metric_names(t["expr"]) for t in panel.get("targets", [])))


def dashboard_metrics(uid: str) -> set[str]:
    """Return every metric a dashboard reads, recording rules expanded to their sources."""
    recorded = recording_rules()
    names = set().union(*(panel_metrics(p) for p in query_panels(by_uid(uid))))
    pending, out = list(names), set()
    while pending:
        name = pending.pop()
        out.add(name)
        if name in recorded:
            pending.extend(metric_names(recorded[name]) - out)
    return out


def test_dashboards_have_stable_uids_shared_title_prefix_and_tag():
    assert {board["uid"] for board in BOARDS.values()} == DASHBOARD_UIDS
    for name, board in BOARDS.items():
        assert name == f"{board['uid']}.json"
        assert board["title"].startswith("Penguins / "), board["title"]
        assert "penguins" in board["tags"]
        assert board.get("id") is None, "provisioned dashboards must not carry a database id"
        assert board["schemaVersion"] >= 36


def test_no_dashboard_uses_a_datasource_variable():
    for path in DASHBOARDS_DIR.glob("*.json"):
        assert "DS_PROMETHEUS" not in path.read_text(), path.name
        assert "__inputs" not in path.read_text(), path.name


@pytest.mark.parametrize("uid", sorted(DASHBOARD_UIDS))
def test_every_panel_queries_the_provisioned_datasource_with_a_unit(uid):
    board = by_uid(uid)
    shown = query_panels(board)
    assert shown
    for panel in shown:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title} has no unit"


@pytest.mark.parametrize("uid", sorted(DASHBOARD_UIDS))
def test_panels_have_unique_ids_and_fit_the_grid(uid):
    board = by_uid(uid)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert all(refs) and len(refs) == len(set(refs)), panel["title"]


def test_panel_queries_read_only_known_metrics():
    recorded = recording_rules()
    for uid, title, expr in panel_queries():
        for name in metric_names(expr):
            known = name in PUBLIC_METRICS | SYNTHETIC_METRICS or name in recorded
            assert known or name.startswith("node_"), f"{uid} / {title}: unknown {name}"


def test_request_metrics_are_read_through_recording_rules():
    # Dashboards and alerts must agree on what "error ratio" and "p95" mean.
    for uid, title, expr in panel_queries():
        raw = metric_names(expr) & {"ml_requests_total", "ml_request_duration_seconds_bucket"}
        assert not raw, f"{uid} / {title} reads {raw} directly; query the recording rule"


def test_ml_api_dashboard_shows_every_model_and_api_metric():
    shown = dashboard_metrics("penguins-ml-api")
    histograms = {f"{name}_bucket" for name in API_HISTOGRAMS}
    expected = API_COUNTERS_AND_GAUGES | histograms | EXPORTER_ML_METRICS | {"ALERTS"}
    assert expected - shown == set()


def test_system_dashboard_compares_exporter_and_node_exporter():
    shown = dashboard_metrics("penguins-system")
    assert EXPORTER_SYSTEM_METRICS - shown == set()
    for prefix in ("node_cpu_", "node_memory_", "node_filesystem_"):
        assert any(name.startswith(prefix) for name in shown), prefix


def test_disk_lines_and_the_file_systems_bar_share_one_definition_of_use():
    # The exporter counts used / (used + available), like df; node exporter's lines
    # must too, or the two lines for one file system disagree by the root reserve.
    board = by_uid("penguins-system")
    node = [
        target["expr"]
        for panel in query_panels(board)
        if panel["title"] in ("Disk usage", "File systems")
        for target in panel["targets"]
        if "node" in target["expr"]
    ]
    assert len(node) == 2, node
    for expr in node:
        assert metric_names(expr) == {"instance_mountpoint:node_filesystem_usage:ratio"}, expr
    usage = recording_rules()["instance_mountpoint:node_filesystem_usage:ratio"]
    assert "node_filesystem_free_bytes" in metric_names(usage)


ML_API = by_uid("penguins-ml-api")
INSTANCE_PANELS = {
    "Up by instance",
    "Request rate by instance",
    "5xx error ratio by instance",
    "p95 latency by instance",
    "Serving model by instance",
}


def test_ml_api_dashboard_shows_each_replica_from_instance_level_rules():
    shown = {
        p["title"]: p for p in query_panels(ML_API) if p["title"].endswith(INSTANCE_PANEL_SUFFIX)
    }
    assert set(shown) == INSTANCE_PANELS
    for title, panel in shown.items():
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names == {"up"} or (names and all(map(instance_level, names))), title
            one_per_instance = "{{instance}}" in target["legendFormat"]
            assert one_per_instance or target.get("format") == "table", title


def test_other_ml_api_panels_draw_one_line_for_all_replicas():
    # Outside the per-instance panels, two replicas must not show as two lines of one
    # name: instance-level series and `up` only summed over instances, and no instance
    # in a legend.
    for panel in query_panels(ML_API):
        if panel["title"].endswith(INSTANCE_PANEL_SUFFIX):
            continue
        for target in panel["targets"]:
            expr = target["expr"]
            if "up" in metric_names(expr) or any(map(instance_level, metric_names(expr))):
                groupings = grouping_labels(expr)
                assert groupings, f"{panel['title']} draws a line per instance"
                assert not any("instance" in labels for labels in groupings), panel["title"]
            assert "{{instance}}" not in target["legendFormat"], panel["title"]


def test_replicas_up_shows_answering_of_expected_now():
    (panel,) = [p for p in query_panels(ML_API) if p["title"] == "Replicas up"]
    (target,) = panel["targets"]
    assert metric_names(target["expr"]) == {"job:up:sum", "job:up:count"}
    assert target["legendFormat"] == "{{up}} / {{expected}}"
    assert panel["options"]["textMode"] == "name"
    # Instant: over a range, an earlier count would be a tile of its own.
    assert target["instant"] and not target["range"]


def alert_thresholds() -> dict[str, float]:
    """Return metric -> threshold for alerts of the form `<metric selector> (<|>) <number>`."""
    out = {}
    for rule in alert_rules().values():
        match = re.fullmatch(r"\s*([\w:]+)(?:\{[^}]*\})?\s*[<>]\s*([\d.]+)\s*", rule["expr"])
        if match and match[1] != "up":
            out[match[1]] = float(match[2])
    return out


def test_alert_thresholds_are_drawn_where_their_metric_is_shown():
    thresholds = alert_thresholds()
    assert len(thresholds) >= 7, thresholds
    drawn = set()
    for board in BOARDS.values():
        for panel in query_panels(board):
            defaults = panel["fieldConfig"]["defaults"]
            steps = [s["value"] for s in defaults.get("thresholds", {}).get("steps", [])]
            if len(steps) < 2:
                continue  # panel shows no thresholds at all
            for metric in panel_metrics(panel) & set(thresholds):
                assert thresholds[metric] in steps, f"{panel['title']}: {metric} {steps}"
                drawn.add(metric)
    assert drawn == set(thresholds), "an alert's threshold is drawn on no panel"


def test_drift_panel_draws_the_psi_threshold():
    board = by_uid("penguins-ml-api")
    psi = "feature:ml_feature_drift_psi:max"
    drift = [panel for panel in query_panels(board) if psi in panel_metrics(panel)]
    assert drift
    for panel in drift:
        defaults = panel["fieldConfig"]["defaults"]
        assert {0.1, 0.2} <= {s["value"] for s in defaults["thresholds"]["steps"]}
        assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
