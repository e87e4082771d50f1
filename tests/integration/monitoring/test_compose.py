"""docker-compose's resolved configuration: services, volumes, and the files they mount."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess

import pytest
import yaml

from tests.support import require_binary
from tests.support.monitoring import (
    COMPOSE_FILE,
    PROMETHEUS_CONFIG,
    PROVISIONING_DIR,
    REPO,
    load_yaml,
)


def compose_config(**env: str) -> dict:
    """Return docker-compose's resolved configuration, with GF_* taken only from ``env``."""
    binary = require_binary("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GF_")}
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**clean, **env}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def volume_targets(service: dict) -> dict[str, str]:
    """Return container path -> source (host path or named volume) of a service."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    """Return the resolved docker-compose configuration with no GF_* overrides."""
    return compose_config()


def test_compose_services_ports_images_and_restart(compose):
    services = compose["services"]
    expected_ports = {"prometheus": 9090, "grafana": 3000, "node-exporter": 9100}
    assert set(expected_ports) <= set(services)
    for name, port in expected_ports.items():
        service = services[name]
        assert {(p["published"], p["target"]) for p in service["ports"]} == {(port, port)}
        image, _, tag = service["image"].rpartition(":")
        assert image and re.search(r"\d+\.\d+", tag) and tag != "latest", service["image"]
        assert service.get("restart") in ("always", "unless-stopped"), name


def test_compose_keeps_data_in_named_volumes(compose):
    named = set(compose.get("volumes", {}))
    assert volume_targets(compose["services"]["prometheus"])["/prometheus"] in named
    assert volume_targets(compose["services"]["grafana"])["/var/lib/grafana"] in named


def test_prometheus_reaches_the_host_and_loads_the_repo_rules(compose):
    service = compose["services"]["prometheus"]
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]
    mounts = volume_targets(service)
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert mounts[config_path] == str(PROMETHEUS_CONFIG)
    # Each relative rule_files pattern, resolved next to the config in the container, must
    # land in a mount of the repository directory that holds the same files.
    for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        container_dir = posixpath.dirname(posixpath.join(posixpath.dirname(config_path), pattern))
        assert mounts.get(container_dir) == str(REPO / posixpath.dirname(pattern)), pattern


def test_grafana_admin_defaults_and_overrides():
    defaults = compose_config()["services"]["grafana"]["environment"]
    assert defaults["GF_SECURITY_ADMIN_USER"] == "admin"
    assert defaults["GF_SECURITY_ADMIN_PASSWORD"] == "admin"
    custom = compose_config(GF_SECURITY_ADMIN_USER="ops", GF_SECURITY_ADMIN_PASSWORD="s3cret")
    environment = custom["services"]["grafana"]["environment"]
    assert environment["GF_SECURITY_ADMIN_USER"] == "ops"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"


def test_grafana_mounts_match_provisioning(compose):
    mounts = volume_targets(compose["services"]["grafana"])
    assert mounts["/etc/grafana/provisioning"] == str(PROVISIONING_DIR)
    provider = load_yaml(PROVISIONING_DIR / "dashboards" / "dashboards.yml")["providers"]
    assert len(provider) == 1 and provider[0]["type"] == "file"
    assert mounts[provider[0]["options"]["path"]] == str(REPO / "grafana" / "dashboards")
    environment = compose["services"]["grafana"]["environment"]
    home = environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    dashboards_dir, name = posixpath.split(home)
    assert (REPO / mounts[dashboards_dir] / name).is_file()


def test_grafana_datasource_points_at_the_compose_prometheus(compose):
    sources = load_yaml(PROVISIONING_DIR / "datasources" / "prometheus.yml")["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    assert (
        source["jsonData"]["timeInterval"]
        == load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    )
