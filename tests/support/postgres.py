"""A real PostgreSQL server for tests: a throwaway cluster, its databases, and pytest fixtures.

PostgreSQL refuses to run as root, so under root the cluster's programs run as the
``postgres`` user (``runuser -u postgres --``) in a folder that user can enter; pytest's
own temporary folders (``/tmp/pytest-of-root``, mode 0700) are not such a folder, so the
fixtures make one under ``/tmp``. The server listens on every address, so clients in
other network namespaces reach it, and takes password logins (scram-sha-256) from
anywhere for the one user :data:`USER`, who owns the databases the tests create.

Durability is traded for speed (``fsync=off``): a cluster lives for one test session.
``stop()`` keeps the data, so a test can stop the database and start it again;
``close()`` stops it and removes its folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from tests.support.processes import IN_CI, free_port

USER = "penguins"
PASSWORD = "penguins-secret"  # a test cluster's; tests check it never shows in any message
_OS_USER = "postgres"
_SETTINGS = {
    "listen_addresses": "'*'",
    # A test cluster is thrown away: no flush to disk is worth waiting for.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # API replicas with several workers each, an MLflow server, tests: room for them all.
    "max_connections": "300",
    "log_min_messages": "warning",
    "log_connections": "off",
}
_HBA = f"""
local all all trust
host all {USER} 0.0.0.0/0 scram-sha-256
host all {USER} ::/0 scram-sha-256
"""


def postgres_bin_dir() -> Path | None:
    """Return the newest installed PostgreSQL's binary folder, or None when there is none."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if found:
        newest = max(found, key=lambda p: int(Path(p).parts[-3]))
        return Path(newest).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def missing_postgres() -> str | None:
    """Return why a test cluster cannot run here, or None when it can."""
    if postgres_bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "runuser is missing: PostgreSQL cannot be run as root without it"
        try:
            import pwd

            pwd.getpwnam(_OS_USER)
        except KeyError:
            return f"there is no {_OS_USER!r} user to run PostgreSQL as (it refuses root)"
    return None


class PostgresCluster:
    """One PostgreSQL server on ``port`` with its data in the folder ``root``."""

    def __init__(self, root: Path, port: int, bin_dir: Path | None = None) -> None:
        """Prepare a cluster in ``root`` (created; its parents must let ``postgres`` in)."""
        self.root = Path(root)
        self.port = port
        self.bin_dir = bin_dir or postgres_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError(missing_postgres() or "PostgreSQL is not installed")
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.socket_dir = self.root  # the superuser's way in, without a password
        self._initialised = False

    # -- the server ---------------------------------------------------------------

    def _command(self, program: str, *args: str) -> list[str]:
        """Return the argv running one PostgreSQL program as the user it accepts."""
        argv = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", _OS_USER, "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one PostgreSQL program to its end; fail with its output if it fails."""
        done = subprocess.run(
            self._command(program, *args),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n--- server log ---\n{self.output()}"
            )
        return done

    def _make_root(self) -> None:
        """Create the cluster's folder, owned by the server's user, enterable by it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, _OS_USER, _OS_USER)
            self.root.chmod(0o755)
            probe = subprocess.run(["runuser", "-u", _OS_USER, "--", "test", "-w", self.root])
            if probe.returncode != 0:
                raise RuntimeError(
                    f"user {_OS_USER!r} cannot enter {self.root}: choose a folder whose "
                    "parents others may enter, e.g. tempfile.mkdtemp(dir='/tmp')"
                )

    def _initdb(self) -> None:
        """Create the data folder, its settings and access rules, once."""
        self._make_root()
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        )
        settings = {
            **_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("".join(f"\n{key} = {value}" for key, value in settings.items()) + "\n")
        (self.data_dir / "pg_hba.conf").write_text(_HBA)
        self._initialised = True

    def start(self) -> PostgresCluster:
        """Start the server (creating the cluster the first time) and wait until it accepts."""
        first = not self._initialised
        if first:
            self._initdb()
        if not self.running:
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "60",
                "start",
            )
        if first:
            self.execute(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        return self

    def stop(self) -> None:
        """Stop the server in fast mode (clients cut off at once); the data stays."""
        if self._initialised and self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        """Return whether the server is running."""
        if not self._initialised:
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def close(self) -> None:
        """Stop the server and remove its folder."""
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self._initialised = False

    def output(self, tail: int = 5_000) -> str:
        """Return the end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except (FileNotFoundError, PermissionError):
            return ""

    def __enter__(self) -> PostgresCluster:
        """Use the cluster as a context: started on entering, removed on leaving."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the cluster and remove its folder."""
        self.close()

    # -- databases ----------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one statement as the superuser, outside a transaction; return its rows."""
        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
            autocommit=True, connect_timeout=10,
        ) as conn:  # fmt: skip
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        """Create a database owned by :data:`USER`; return its URI (with the password)."""
        self.execute(f'CREATE DATABASE "{name}" OWNER {USER}')
        return self.uri(name)

    def uri(self, name: str, host: str = "127.0.0.1") -> str:
        """Return the URI of database ``name`` as reached at ``host``."""
        return f"postgresql://{USER}:{PASSWORD}@{host}:{self.port}/{name}"


def start_cluster() -> PostgresCluster:
    """Start a cluster in a fresh folder under /tmp; skip locally, fail under CI, if impossible."""
    reason = missing_postgres()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    cluster = PostgresCluster(
        Path(tempfile.mkdtemp(prefix="penguins-pg-", dir="/tmp")), free_port()
    )
    try:
        return cluster.start()
    except BaseException:
        cluster.close()
        raise


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """Yield one PostgreSQL cluster for the whole test session; removed at its end.

    A test that stops it starts it again before it ends (the next test finds it
    running either way: ``postgres_log_uri`` starts it if needed).
    """
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def postgres_log_uri(postgres: PostgresCluster) -> str:
    """Return the URI of a fresh, empty database of the session cluster."""
    if not postgres.running:
        postgres.start()
    return postgres.create_database(f"log_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """Yield a cluster of the test's own, free to stop and start; removed afterwards.

    For tests that take the database away: others sharing the session cluster (an
    MLflow server on it, say) never see it stop.
    """
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()
