"""The hosts the team tests run replicas on: each reaches the test's namespace and back."""

from __future__ import annotations

import socket
import sys
import textwrap

from tests.support import IN_CI, ManagedProcess, free_port
from tests.support.netns import make_hosts

# A TCP server that answers each connection with the address it was reached at.
_ECHO = textwrap.dedent(
    """
    import socket, sys
    server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
    while True:
        conn, peer = server.accept()
        conn.sendall(f"{conn.getsockname()[0]} {peer[0]}".encode())
        conn.close()
    """
)


def _ask(address: str, port: int, timeout: float = 10.0) -> str:
    """Return what the echo server at ``address`` answers, retrying while it starts."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=2) as sock:
                return sock.recv(200).decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_each_host_serves_at_its_own_address_and_sees_the_gateway(tmp_path, summary_line):
    with make_hosts(2, allow_fallback=not IN_CI) as (hosts, description):
        summary_line(f"team hosts: {description}")
        port = free_port()
        servers = [
            ManagedProcess(
                host.command(sys.executable, "-c", _ECHO, str(port + i)),
                tmp_path / f"echo{i}.log",
                name=f"echo-{host.name}",
            )
            for i, host in enumerate(hosts)
        ]
        try:
            for i, host in enumerate(hosts):
                local, peer = _ask(host.address, port + i).split()
                # The server saw the connection arrive at the host's address, from the
                # test's own end of that host's link.
                assert (local, peer) == (host.address, host.gateway)
            if hosts[0].wrap:
                assert len({h.address for h in hosts}) == len(hosts)
        finally:
            for server in servers:
                server.stop(timeout=5)
