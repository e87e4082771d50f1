"""The team deployment's commands, read from docker-compose.yml: one source for both.

Docker does not run here, so the tests run natively the very commands the compose
services run: :func:`service_command` reads a service's ``command`` from the compose
file, and :func:`native_argv` turns it into an argv for this machine (this virtualenv's
interpreter, and the flags a test adds, such as a free port, after the service's own:
argparse and click take the last value given). A command changed in the compose file
is then the command the tests run.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from tests.support.monitoring import COMPOSE_FILE
from tests.support.processes import PROJECT_DIR

DOCKERFILE = PROJECT_DIR / "Dockerfile"
TEAM_PROFILE = "team"
# The services of `docker-compose up -d` without a profile: the seed's monitoring stack.
SEED_SERVICES = frozenset({"prometheus", "grafana", "node-exporter"})


def compose_services() -> dict[str, dict]:
    """Return the services of docker-compose.yml as written (no interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def service_command(name: str) -> list[str]:
    """Return the command a compose service runs, as a list of arguments."""
    command = compose_services()[name]["command"]
    if not isinstance(command, list):
        raise ValueError(f"service {name}: write its command as a list, not a string")
    return [str(arg) for arg in command]


def native_argv(name: str, *extra: str) -> list[str]:
    """Return the command of service ``name`` as this machine runs it, with ``extra`` after.

    ``python`` becomes this interpreter; any other program (``mlflow``) is taken from
    this interpreter's virtualenv first, then from PATH.
    """
    program, *args = service_command(name)
    return [_native_program(program), *args, *map(str, extra)]


def _native_program(program: str) -> str:
    """Return the path of a program the containers run, in this virtualenv or on PATH."""
    if program == "python":
        return sys.executable
    beside = Path(sys.executable).with_name(program)
    if beside.exists():
        return str(beside)
    return shutil.which(program) or program
