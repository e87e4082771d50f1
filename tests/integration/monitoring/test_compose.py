"""docker-compose's resolved configuration: services, volumes, and the files they mount.

Without a profile, the seed's monitoring stack; with profile ``team``, the team
deployment too, whose commands are those the native tests run (tests/support/compose.py)
and whose image is the project's Dockerfile, checked here as text (no Docker engine).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import subprocess
import sys

import pytest
import yaml

from penguins.config import from_env
from penguins.serving.settings import ServingSettings
from tests.support import require_binary
from tests.support.compose import (
    DOCKERFILE,
    SEED_SERVICES,
    TEAM_PROFILE,
    compose_services,
    native_argv,
    service_command,
)
from tests.support.monitoring import (
    COMPOSE_FILE,
    JOBS,
    PROMETHEUS_CONFIG,
    PROVISIONING_DIR,
    REPO,
    load_yaml,
)
from tests.support.nginx import COMPOSE_INCLUDES, SITE_CONFIG, compose_server_line

TEAM_PROMETHEUS_CONFIG = REPO / "prometheus" / "team.yml"
FILE_SD_PROMETHEUS_CONFIG = REPO / "prometheus" / "team-file-sd.yml"
POSTGRES_INIT = REPO / "deploy" / "postgres" / "initdb.sql"
TEAM_SERVICES = {"postgres", "mlflow", "trainer", "api", "nginx", "exporter"}
# The variables docker-compose.yml reads: a test sets them itself, or leaves them unset.
COMPOSE_VARIABLES = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))


def compose_config(*options: str, **env: str) -> dict:
    """Return docker-compose's resolved configuration, its variables taken only from ``env``."""
    binary = require_binary("docker-compose")
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    clean = {k: v for k, v in clean.items() if not k.startswith(("GF_", "COMPOSE_"))}
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), *options, "config"],
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


def assert_prometheus_loads(service: dict, config) -> None:
    """Assert the service runs Prometheus on ``config`` (a repo file) and mounts its rules."""
    mounts = volume_targets(service)
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert mounts[config_path] == str(config)
    # Each relative rule_files pattern, resolved next to the config in the container, must
    # land in a mount of the repository directory that holds the same files.
    for pattern in load_yaml(config)["rule_files"]:
        container_dir = posixpath.dirname(posixpath.join(posixpath.dirname(config_path), pattern))
        host_dir = (config.parent / posixpath.dirname(pattern)).resolve()
        assert mounts.get(container_dir) == str(host_dir), pattern


def test_prometheus_reaches_the_host_and_loads_the_repo_rules(compose):
    service = compose["services"]["prometheus"]
    assert "host.docker.internal:host-gateway" in service["extra_hosts"]
    assert_prometheus_loads(service, PROMETHEUS_CONFIG)


def test_prometheus_takes_the_team_config_when_told():
    """PROMETHEUS_CONFIG is the config's path in the repository; its rules are the same."""
    relative = TEAM_PROMETHEUS_CONFIG.relative_to(REPO).as_posix()
    config = compose_config("--profile", TEAM_PROFILE, PROMETHEUS_CONFIG=relative)
    assert_prometheus_loads(config["services"]["prometheus"], TEAM_PROMETHEUS_CONFIG)


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


# ---- profile `team` ------------------------------------------------------------------


@pytest.fixture(scope="module")
def team() -> dict:
    """Return the resolved configuration with profile ``team``, no variables set."""
    return compose_config("--profile", TEAM_PROFILE)


def test_up_without_a_profile_starts_exactly_the_seed_services():
    """Compose starts a service without `profiles` always, and one with them only when asked."""
    services = compose_services()
    assert {name for name, s in services.items() if not s.get("profiles")} == SEED_SERVICES
    assert {name for name, s in services.items() if s.get("profiles")} == TEAM_SERVICES
    assert all(services[name]["profiles"] == [TEAM_PROFILE] for name in TEAM_SERVICES)
    for name in SEED_SERVICES:  # a seed service needing a team one would fail without it
        assert not set(services[name].get("depends_on", ())) & TEAM_SERVICES, name


def test_team_services_use_pinned_images_or_the_project_dockerfile(team):
    services = team["services"]
    for name in TEAM_SERVICES:
        service = services[name]
        if "build" in service:
            assert service["build"]["context"] == str(REPO), name
            assert service["image"] == services["api"]["image"], name
        else:
            image, _, tag = service["image"].rpartition(":")
            assert image and re.fullmatch(r"\d+\.\d+(\.\d+)?(-\w+)?", tag), service["image"]


def test_team_commands_are_the_dockerfiles_and_the_native_tests(team):
    """The API's command is the image's CMD, and the tests run each command natively."""
    assert service_command("api") == dockerfile_instruction("CMD")
    for name in ("api", "trainer", "exporter", "mlflow"):
        assert team["services"][name]["command"] == service_command(name), name
        program, *args = service_command(name)
        assert native_argv(name)[1:] == args
        if program == "python":
            assert native_argv(name)[0] == sys.executable
            assert (REPO / args[0]).is_file(), args[0]
    assert service_command("api")[:2] == ["python", "ml_serving.py"]
    assert service_command("trainer") == ["python", "modelling.py"]
    assert service_command("exporter") == ["python", "prometheus_exporter.py"]


def test_the_mlflow_server_command_takes_only_flags_mlflow_has(team):
    command = service_command("mlflow")
    assert command[:2] == ["mlflow", "server"]
    result = subprocess.run(
        [*native_argv("mlflow")[:2], "--help"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for flag in (arg for arg in command if arg.startswith("--")):
        assert re.search(rf"^\s+(-\w, )?{flag}\b", result.stdout, re.MULTILINE), flag
    environment = team["services"]["mlflow"]["environment"]
    assert environment["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    volumes = volume_targets(team["services"]["mlflow"])
    destination = command[command.index("--artifacts-destination") + 1]
    assert volumes[destination] in team["volumes"]
    assert {p["target"] for p in team["services"]["mlflow"]["ports"]} == {5001}


def test_the_stores_are_postgres_and_the_tracking_server(team):
    services = team["services"]
    postgres = services["postgres"]["environment"]
    created = re.findall(r"CREATE DATABASE (\w+);", POSTGRES_INIT.read_text())
    databases = {postgres["POSTGRES_DB"], *created}
    for name in ("api", "exporter"):
        environment = services[name]["environment"]
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5001", name
        log_uri = environment["PREDICTION_LOG_URI"]
        assert log_uri.startswith(f"postgresql://{postgres['POSTGRES_USER']}:"), name
        assert log_uri.rsplit("/", 1)[1] in databases, name
    backend = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.rsplit("/", 1)[1] == postgres["POSTGRES_DB"]
    assert services["trainer"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5001"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    mounts = volume_targets(services["postgres"])
    assert mounts["/var/lib/postgresql/data"] in team["volumes"]
    (init,) = [target for target in mounts if target.startswith("/docker-entrypoint-initdb.d/")]
    assert mounts[init] == str(POSTGRES_INIT) and init.endswith(".sql")


def test_postgres_credentials_come_from_the_environment():
    config = compose_config(
        "--profile", TEAM_PROFILE, POSTGRES_USER="ops", POSTGRES_PASSWORD="s3cret"
    )
    services = config["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert services["api"]["environment"]["PREDICTION_LOG_URI"].startswith(
        "postgresql://ops:s3cret@"
    )
    backend = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql://ops:s3cret@")
    # Passwords travel in the environment, never on a command line that `ps` shows.
    for name, service in services.items():
        assert "s3cret" not in " ".join(map(str, service.get("command") or [])), name


def test_api_replicas_scale_behind_nginx(team):
    services = team["services"]
    assert "ports" not in services["api"], "a fixed host port stops `--scale api=N`"
    api_port = from_env(ServingSettings, environ={}).port
    assert "--port" not in service_command("api")
    assert [str(p) for p in services["api"]["expose"]] == [str(api_port)]
    # nginx's compose upstream is every replica of the api service on that port.
    address, parameters = compose_server_line()
    assert address == f"api:{api_port}"
    assert "resolve" in parameters
    upstream = (COMPOSE_INCLUDES / "upstream.conf").read_text()
    assert re.search(r"^resolver 127\.0\.0\.11\b", upstream, re.MULTILINE)  # Docker's DNS
    mounts = volume_targets(services["nginx"])
    assert mounts["/etc/nginx/conf.d/default.conf"] == str(SITE_CONFIG)
    assert mounts["/etc/nginx/penguins.d"] == str(COMPOSE_INCLUDES)
    listen = re.search(r"^listen (\d+);", (COMPOSE_INCLUDES / "listen.conf").read_text(), re.M)
    assert {(p["published"], p["target"]) for p in services["nginx"]["ports"]} == {
        (8080, int(listen[1]))
    }
    moved = compose_config("--profile", TEAM_PROFILE, BALANCER_PORT="9080")
    assert moved["services"]["nginx"]["ports"][0]["published"] == 9080


def test_team_prometheus_configs_are_valid_and_keep_the_seeds_jobs_and_rules(team):
    promtool = require_binary("promtool")
    seed_rules = {
        (PROMETHEUS_CONFIG.parent / p).resolve() for p in load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    }
    for config in (TEAM_PROMETHEUS_CONFIG, FILE_SD_PROMETHEUS_CONFIG):
        result = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 rule files found" in result.stdout + result.stderr
        parsed = load_yaml(config)
        assert {job["job_name"] for job in parsed["scrape_configs"]} == JOBS
        assert {(config.parent / p).resolve() for p in parsed["rule_files"]} == seed_rules
    # In compose, the API and exporter jobs ask Docker's DNS for the services' replicas.
    jobs = {job["job_name"]: job for job in load_yaml(TEAM_PROMETHEUS_CONFIG)["scrape_configs"]}
    for job, service in (("penguins-api", "api"), ("penguins-exporter", "exporter")):
        (dns,) = jobs[job]["dns_sd_configs"]
        assert dns["names"] == [service] and dns["type"] == "A"
        assert [str(p) for p in team["services"][service]["expose"]] == [str(dns["port"])]


# ---- the image ------------------------------------------------------------------------


def dockerfile_lines() -> list[str]:
    """Return the Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def dockerfile_instruction(name: str) -> list[str]:
    """Return the JSON-form arguments of the Dockerfile's one ``name`` instruction."""
    (line,) = [line for line in dockerfile_lines() if line.split()[0] == name]
    return yaml.safe_load(line.split(None, 1)[1])


def dockerignore_admits(path: str) -> bool:
    """Return whether .dockerignore lets ``path`` (relative to the repo) into the build.

    Docker's rules, as far as this file uses them: the last line that matches decides,
    ``!`` admits, a folder's line covers what is inside it, ``**/`` matches at any depth.
    """
    parts = path.split("/")
    itself_and_folders = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    admitted = True
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        pattern = rule.removeprefix("!").rstrip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(p, pattern) for p in itself_and_folders)
        if matched:
            admitted = rule.startswith("!")
    return admitted


def test_dockerfile_pins_its_base_runs_as_a_user_and_checks_health():
    lines = dockerfile_lines()
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    (healthcheck,) = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert "/health" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    assert "RUN pip install --no-cache-dir -r requirements.txt" in lines
    assert dockerfile_instruction("CMD") == ["python", "ml_serving.py", "--host", "0.0.0.0"]


def test_requirements_are_pinned():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[\w,-]+\])?==[\w.]+", line), line


def test_the_image_gets_what_the_scripts_need_and_nothing_else():
    sources = [
        source
        for line in dockerfile_lines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert dockerignore_admits(source.rstrip("/")), source
    for script in ("modelling.py", "ml_serving.py", "prometheus_exporter.py", "inference.py"):
        assert script in sources, script
    for kept_out in (".venv", ".git", "tests", "mlflow.db", "predictions.db", "bench", "mlruns"):
        assert not dockerignore_admits(kept_out), kept_out
    assert not dockerignore_admits("penguins/__pycache__")
