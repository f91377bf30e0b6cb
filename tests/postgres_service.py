"""A throwaway PostgreSQL server for the tests: its own cluster in a temp dir, on a free port, removed after.

A test module asks for it with ``pytest_plugins = ("postgres_service",)`` and the session fixture
``postgres``, a :class:`Postgres` whose ``uri`` (``postgresql://isdarts:<pw>@127.0.0.1:<port>/mlflow``) is what
``isdarts tracking-server --backend-store-uri`` takes. TCP logins need the password (scram), as on a real
database server; ``query`` reads the tables back. The server is Debian's ``postgresql`` package, installed
with apt-get when missing (tests/services.py), else the test skips saying how to install it.

The cluster is made for speed, not safety (no fsync, trust on the unix socket): it starts in about a second.
initdb and postgres refuse to run as root, so under root they run as the ``postgres`` user the package made.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import apt_install

SUPERUSER, PASSWORD, DATABASE = "isdarts", "tracking-pw", "mlflow"
START_TIMEOUT_S = 60
_COMMANDS = ("initdb", "pg_ctl", "createdb")


@dataclass(frozen=True)
class Postgres:
    """A running throwaway server: where it listens, and the URI of its empty ``mlflow`` database."""

    host: str
    port: int
    database: str
    user: str
    password: str

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows `sql` returns (psycopg2, the driver the tracking server uses too)."""
        import psycopg2

        with psycopg2.connect(self.uri) as con, con.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        con.close()
        return rows


def postgres_bin_dir() -> Path | None:
    """The newest server's binaries: Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH."""
    found = sorted(
        (d for d in Path("/usr/lib/postgresql").glob("*/bin") if all((d / c).is_file() for c in _COMMANDS)),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = [shutil.which(c) for c in _COMMANDS]
    return Path(on_path[0]).parent if all(on_path) else None


def _bin_dir_or_skip() -> Path:
    if (bin_dir := postgres_bin_dir()) is not None:
        return bin_dir
    why = apt_install(["postgresql"])
    if (bin_dir := postgres_bin_dir()) is None:
        pytest.skip(f"no PostgreSQL server binaries and they could not be installed ({why or 'not found after'}); "
                    "install with `apt-get install postgresql`")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A fresh cluster with database ``mlflow`` on a free 127.0.0.1 port; stopped and deleted on exit."""
    bin_dir = _bin_dir_or_skip()
    as_user: list[str] = []
    root = os.geteuid() == 0
    # Short, for the unix socket path (107 bytes at most); under root in /tmp, which the postgres user can enter.
    base = Path(tempfile.mkdtemp(prefix="isdarts-pg-", dir="/tmp" if root else None))
    if root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and no `postgres` user to run PostgreSQL as; `apt-get install postgresql`")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], cwd=base, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            detail = log.read_text()[-1500:] if log.is_file() else ""
            raise RuntimeError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-1500:]}\n{detail}")

    started = False
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
        port = _free_port()
        settings = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                    "-c full_page_writes=off -c max_connections=100")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", settings, "-w",
            "-t", str(START_TIMEOUT_S), "start")
        started = True
        run(str(bin_dir / "createdb"), "-h", str(base), "-p", str(port), "-U", SUPERUSER, DATABASE)
        yield Postgres("127.0.0.1", port, DATABASE, SUPERUSER, PASSWORD)
    finally:
        if started:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=START_TIMEOUT_S)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL server for the test session (see the module docstring)."""
    with running_postgres() as server:
        yield server
