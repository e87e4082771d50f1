"""Hosts of their own for the team tests: Linux network namespaces joined by veth pairs.

Each :class:`Host` is a network namespace with one veth pair to the test's own
namespace: the host has ``10.X.N.2``, and its peer in the test's namespace
``10.X.N.1`` is the host's gateway, where the shared services (PostgreSQL, the MLflow
tracking server, nginx, Prometheus) listen on every address. A process started with
:attr:`Host.wrap` in front of its command line runs on that host: it binds, connects
and is reached at the host's address, as a replica on another machine would be.

Making namespaces needs root (CI has it). Where they cannot be made, :func:`make_hosts`
falls back to hosts that all share the loopback address and tell apart by port,
printing why; under CI the fallback is refused, so the team tests really cross hosts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

# The second octet: one per test run, so two runs on one machine do not collide.
_NET = 100 + os.getpid() % 100


@dataclass(frozen=True)
class Host:
    """One host of a test: where its processes listen, and how to start them there."""

    name: str
    address: str  # the host's own address, where others reach what it serves
    gateway: str  # the address of the test's namespace as this host sees it
    wrap: tuple[str, ...] = field(default=())  # the argv prefix that runs a command there

    def command(self, *argv: str) -> list[str]:
        """Return the command line that runs ``argv`` on this host."""
        return [*self.wrap, *map(str, argv)]


def _ip(*args: str) -> None:
    """Run one ``ip`` command, failing with its error output."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def namespaces_unavailable() -> str | None:
    """Return why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "the ip command is not installed (Debian package iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _make_namespace(index: int) -> Host:
    """Make namespace number ``index`` with its veth pair, addresses, routes and loopback."""
    name = f"pg{os.getpid() % 100_000}h{index}"
    outside, inside = f"{name}o", f"{name}i"  # interface names: at most 15 characters
    gateway, address = f"10.{_NET}.{index}.1", f"10.{_NET}.{index}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("addr", "add", f"{gateway}/24", "dev", outside)
        _ip("link", "set", outside, "up")
        for args in (
            ("addr", "add", f"{address}/24", "dev", inside),
            ("link", "set", inside, "up"),
            ("link", "set", "lo", "up"),
            ("route", "add", "default", "via", gateway),
        ):
            _ip("-n", name, *args)
    except OSError:
        _remove_namespace(name)
        raise
    return Host(name, address, gateway, ("ip", "netns", "exec", name))


def _remove_namespace(name: str) -> None:
    """Delete a namespace; its end of the veth pair goes with it, and so the other end."""
    with contextlib.suppress(OSError):
        _ip("netns", "delete", name)


@contextlib.contextmanager
def make_hosts(count: int, *, allow_fallback: bool = True) -> Iterator[tuple[list[Host], str]]:
    """Yield ``count`` hosts and a line saying what they are; remove them on leaving.

    Without namespaces (and with ``allow_fallback``), every host is the loopback
    address with no prefix: the caller gives each its own port.
    """
    reason = namespaces_unavailable()
    hosts: list[Host] = []
    try:
        if reason is None:
            try:
                for index in range(1, count + 1):
                    hosts.append(_make_namespace(index))
            except OSError as exc:
                reason = f"network namespaces could not be made: {exc}"
        if reason is not None:
            if not allow_fallback:
                raise RuntimeError(reason)
            for host in hosts:
                _remove_namespace(host.name)
            hosts = [Host(f"loopback{i}", "127.0.0.1", "127.0.0.1") for i in range(count)]
            yield hosts, f"{count} hosts on separate ports of 127.0.0.1 ({reason})"
        else:
            names = ", ".join(f"{h.name} {h.address}" for h in hosts)
            yield hosts, f"{count} hosts in network namespaces: {names}"
    finally:
        for host in hosts:
            if host.wrap:
                _remove_namespace(host.name)
