"""A real nginx with the repository's balancer config, in front of replicas a test started.

The site config, ``deploy/nginx/penguins.conf``, is used as it is, the same file
docker-compose mounts. What compose gives it in ``deploy/nginx/penguins.d/`` (every
replica of the ``api`` service, found by DNS; port 8080) is written here instead: one
``server`` line per address the test gives, with the failure settings of the compose
file's line, and a listen address of the test's. nginx runs in the foreground in a
folder of its own (config, pid, temporary files, access log) and logs errors to its
output, the :class:`ManagedProcess` log.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

from tests.support.processes import PROJECT_DIR, ManagedProcess, free_port, require_binary

NGINX_DIR = PROJECT_DIR / "deploy" / "nginx"
SITE_CONFIG = NGINX_DIR / "penguins.conf"
COMPOSE_INCLUDES = NGINX_DIR / "penguins.d"
HEALTH_PATH = "/nginx-health"
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def compose_server_line() -> tuple[str, list[str]]:
    """Return the address and parameters of the compose upstream's one ``server`` line."""
    text = (COMPOSE_INCLUDES / "upstream.conf").read_text()
    lines = re.findall(r"^\s*server\s+([^;]+);", text, flags=re.MULTILINE)
    if len(lines) != 1:
        raise ValueError(f"expected one server line in {COMPOSE_INCLUDES / 'upstream.conf'}")
    address, *parameters = lines[0].split()
    return address, parameters


def upstream_conf(addresses: Sequence[str]) -> str:
    """Return penguins.d/upstream.conf for replicas at ``addresses`` (``HOST:PORT`` each).

    Each line carries the compose line's parameters except ``resolve``: these are
    addresses, not a name to look up again.
    """
    if not addresses:
        raise ValueError("an upstream needs at least one address")
    _, parameters = compose_server_line()
    kept = " ".join(p for p in parameters if p != "resolve")
    return "".join(f"server {address} {kept};\n" for address in addresses)


def main_conf(site_config: Path) -> str:
    """Return nginx's main config: relative paths land in the prefix, the site is included."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must enter the prefix
    temp = "".join(f"    {name}_temp_path tmp/{name};\n" for name in _TEMP_PATHS)
    return (
        f"{user}worker_processes 1;\npid nginx.pid;\nerror_log stderr notice;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n{temp}    include {site_config};\n}}\n"
    )


class Balancer:
    """nginx balancing over ``upstreams``, listening on ``host:port`` (a free port by default)."""

    def __init__(
        self,
        root: Path,
        upstreams: Sequence[str],
        host: str = "127.0.0.1",
        port: int | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """Write nginx's folder under ``root`` and start nginx (``wrap`` prefixes its argv)."""
        binary = require_binary("nginx")
        self.prefix = Path(root)
        self.port = port or free_port()
        reach = "127.0.0.1" if host in ("0.0.0.0", "*") else host
        self.url = f"http://{reach}:{self.port}"
        self._write(upstreams, host)
        argv = [*wrap, binary, "-p", f"{self.prefix}/", "-c", str(self.prefix / "nginx.conf")]
        argv += ["-e", "stderr", "-g", "daemon off;"]
        self.process = ManagedProcess(argv, self.prefix / "nginx.log", name="nginx")

    def _write(self, upstreams: Sequence[str], host: str) -> None:
        """Write the main config and penguins.d/ into the prefix."""
        includes = self.prefix / "penguins.d"
        includes.mkdir(parents=True, exist_ok=True)
        (self.prefix / "tmp").mkdir(exist_ok=True)
        (self.prefix / "nginx.conf").write_text(main_conf(SITE_CONFIG))
        (includes / "upstream.conf").write_text(upstream_conf(upstreams))
        (includes / "listen.conf").write_text(
            f"listen {host}:{self.port};\naccess_log {self.access_log_path} penguins;\n"
        )

    @property
    def access_log_path(self) -> Path:
        """Return the access log's path: one line per request, with the replicas tried."""
        return self.prefix / "access.log"

    def access_log(self) -> str:
        """Return the access log so far."""
        with contextlib.suppress(FileNotFoundError):
            return self.access_log_path.read_text()
        return ""

    def wait_ready(self, timeout: float = 20.0) -> requests.Response:
        """Wait until nginx answers its own health check; fail with its log if not."""
        return self.process.wait_for_http(f"{self.url}{HEALTH_PATH}", timeout=timeout)

    def stop(self) -> int:
        """Stop nginx; return its exit code."""
        return self.process.stop(timeout=10)


@contextlib.contextmanager
def balancing(root: Path, upstreams: Sequence[str], **kwargs) -> Iterator[Balancer]:
    """Start nginx over ``upstreams``, wait until it answers, stop it after the block."""
    balancer = Balancer(root, upstreams, **kwargs)
    try:
        balancer.wait_ready()
        yield balancer
    finally:
        balancer.stop()
