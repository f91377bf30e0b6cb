"""`isdarts tracking-server`: one MLflow tracking server that the jobs of a whole cluster log to.

Jobs on several nodes cannot share the project's SQLite store, so on a cluster one machine runs this server:
runs, params and metrics go to PostgreSQL, artifacts (genotypes, models) to a directory the server writes
and serves itself, so the compute nodes need neither database access nor the shared file system::

    isdarts tracking-server --backend-store-uri postgresql://mlflow@dbhost:5432/mlflow \\
        --artifacts-destination /shared/isdarts/mlartifacts        # runs in the foreground
    export MLFLOW_TRACKING_URI=http://<server host>:5000           # on the compute nodes (printed by the above)

Everything is checked before the server starts (the URI, the psycopg2 driver, a real connection to the
database, a writable artifacts directory, a free port), each failure with a message naming the fix; then this
process becomes ``mlflow server`` (exec), so it can run as a SLURM job or under systemd. A password may be in
the URI, or better in PGPASSWORD or ~/.pgpass: the server gets it through PGPASSWORD, never on its command
line, where every user of a shared machine could read it. ``--print-command`` prints the command instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from isdarts.errors import ConfigError

BACKEND_ENV, ARTIFACTS_ENV = "MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"  # mlflow server's own
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_WORKERS = "0.0.0.0", 5000, 4
CONNECT_TIMEOUT_S = 10
_SCHEMES = ("postgresql", "postgresql+psycopg2")
# SQLAlchemy 2.1 reads a bare postgresql:// with psycopg 3; the server is told to use psycopg2, the driver
# isdarts installs, whichever SQLAlchemy is there.
_SERVER_SCHEME = "postgresql+psycopg2"
_ANY_INTERFACE = ("0.0.0.0", "::", "")
# MLflow's default Host-header allowlist (localhost and private networks), which giving --allowed-hosts
# replaces; a compute node's request names the server by host name, which that list lacks.
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "10.*", "192.168.*", "172.1[6-9].*", "172.2[0-9].*", "172.3[01].*")
_PSYCOPG2_FIX = "install the PostgreSQL driver: `pip install 'psycopg2-binary>=2.9,<3'`"


class TrackingServerError(ConfigError):
    """The server cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class Backend:
    """A PostgreSQL backend store URI, split into what the checks and the messages need."""

    uri: str  # as given, password included
    host: str | None  # None: the local unix socket
    port: int
    database: str
    user: str | None
    password: str | None

    @property
    def where(self) -> str:
        user = f" as user {self.user!r}" if self.user else ""
        where = f"{self.host}:{self.port}" if self.host else f"this machine's unix socket (port {self.port})"
        return f"database {self.database!r} on {where}{user}"

    @property
    def server_uri(self) -> str:
        """The URI for MLflow: psycopg2 named as the driver, the password left out (libpq then reads PGPASSWORD
        or ~/.pgpass)."""
        parts = urlsplit(self.uri)
        netloc = parts.netloc.rpartition("@")[2]
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit(parts._replace(scheme=_SERVER_SCHEME, netloc=netloc))

    @property
    def libpq_uri(self) -> str:
        """The URI psycopg2 (libpq) takes: plain ``postgresql://``, SQLAlchemy's ``+driver`` dropped."""
        return "postgresql" + self.uri[self.uri.index("://"):]


def parse_backend(uri: str | None) -> Backend:
    """Check `uri` is ``postgresql://user[:password]@host[:port]/database``; raise naming the fix if not."""
    form = "postgresql://user[:password]@host[:port]/database"
    if not uri:
        raise TrackingServerError(f"no backend store: give --backend-store-uri {form} (or set {BACKEND_ENV})")
    parts = urlsplit(uri)
    if parts.scheme not in _SCHEMES:
        hint = " (SQLAlchemy, which MLflow uses, wants `postgresql://`)" if parts.scheme == "postgres" else ""
        raise TrackingServerError(
            f"backend store {_masked(uri)!r} is not a PostgreSQL URI{hint}: give {form}; a cluster's jobs cannot "
            "share a SQLite file, which is why this server keeps its runs in PostgreSQL"
        )
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise TrackingServerError(f"backend store {_masked(uri)!r}: bad port ({exc}); give {form}") from None
    database = parts.path.lstrip("/")
    if not database:
        raise TrackingServerError(f"backend store {_masked(uri)!r} names no database: give {form}")
    password = unquote(parts.password) if parts.password is not None else None
    return Backend(uri, parts.hostname, port, unquote(database), unquote(parts.username or "") or None, password)


def _masked(uri: str) -> str:
    """`uri` fit for a message: its password replaced by ``****``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:****@{host}"))


def check_database(backend: Backend) -> None:
    """Connect to the database once, so that a wrong URI fails here, in one line, and not in MLflow's workers."""
    try:
        import psycopg2  # only the server's machine needs the driver, so only this check loads it
    except ImportError:
        raise TrackingServerError(f"MLflow's PostgreSQL driver psycopg2 is missing: {_PSYCOPG2_FIX}") from None
    try:
        psycopg2.connect(backend.libpq_uri, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg2.Error as exc:
        reason = " ".join(str(exc).split())  # libpq's message spans lines
        reason += "" if reason.endswith((".", "?")) else "."
        raise TrackingServerError(
            f"cannot connect to PostgreSQL {backend.where}: {reason} Check that the server runs and accepts TCP "
            f"connections from this machine (postgresql.conf listen_addresses, pg_hba.conf), that the database "
            f"exists (`createdb{' -h ' + backend.host if backend.host else ''} -p {backend.port}"
            f"{' -U ' + backend.user if backend.user else ''} {backend.database}`), and the user and password (in "
            "the URI, PGPASSWORD or ~/.pgpass)"
        ) from None


def artifacts_path(destination: str | None) -> Path:
    """The absolute artifacts directory `destination` names (a path or ``file://`` URI); nothing is touched."""
    if not destination:
        raise TrackingServerError(
            f"no artifacts directory: give --artifacts-destination DIR (or set {ARTIFACTS_ENV}), a directory on a "
            "file system this machine writes (shared or not: the server serves the artifacts to the nodes itself)"
        )
    parts = urlsplit(destination)
    if parts.scheme not in ("", "file"):
        raise TrackingServerError(
            f"--artifacts-destination {destination!r}: give a directory (a path or file:// URI); for object stores "
            "(s3://, gs://) run `mlflow server` yourself"
        )
    return Path(os.path.abspath(unquote(parts.path) if parts.scheme == "file" else destination))


def prepare_artifacts_dir(path: Path) -> None:
    """Create `path` if only its last part is missing, and check this user can write files in it."""
    if not path.parent.is_dir():
        raise TrackingServerError(
            f"--artifacts-destination {path}: its parent folder {path.parent} does not exist; create it (on the "
            "shared file system) or give another directory"
        )
    try:
        path.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".isdarts-write-check-"):
            pass
    except OSError as exc:
        raise TrackingServerError(
            f"--artifacts-destination {path} is not a directory this user can write ({exc.strerror or exc}); "
            "fix its permissions or give another directory"
        ) from None


def check_port_free(host: str, port: int) -> None:
    """Bind `host`:`port` once, so that a busy port fails here rather than in each of MLflow's workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT port is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise TrackingServerError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): another server (an MLflow server already "
                "running?) holds the port, or the address is not this machine's; pick another with --port or --host"
            ) from None


def advertised_host(host: str) -> str:
    """The name the compute nodes reach the server by: this machine's host name when it listens everywhere."""
    return socket.gethostname() if host in _ANY_INTERFACE else host


def allowed_hosts(host: str, extra: str | None = None) -> list[str]:
    """Host headers the server accepts (MLflow's guard against DNS rebinding): the names this machine goes by,
    local and private-network addresses, and `extra` (comma-separated, fnmatch patterns allowed)."""
    names = [advertised_host(host), socket.gethostname(), socket.getfqdn()]
    hosts: list[str] = []
    for name in [*names, *_LOCAL_HOSTS, *(h.strip() for h in (extra or "").split(",") if h.strip())]:
        # fnmatch reads "[" as a character set: an IPv6 literal's own bracket is spelled "[[]".
        with_port = f"[[]{name[1:]}:*" if name.startswith("[") else f"{name}:*"
        for pattern in (name, with_port) if not name.endswith("*") else (name,):
            if pattern not in hosts:
                hosts.append(pattern)
    return hosts


def server_command(
    backend: Backend, artifacts: Path, *, host: str, port: int, workers: int, extra_hosts: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """``mlflow server``'s argv, and the environment it needs on top of this one (the store URI, its password)."""
    argv = [
        sys.executable, "-m", "mlflow", "server", "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--allowed-hosts", ",".join(allowed_hosts(host, extra_hosts)),
    ]
    env = {BACKEND_ENV: backend.server_uri, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    # MLflow 3's server also runs a job runner (GenAI evaluations, trace upkeep): eight more Python processes
    # that tracking trainings never use, and that a login node would rather not carry. A user's setting wins.
    env[JOB_EXECUTION_ENV] = os.environ.get(JOB_EXECUTION_ENV, "false")
    if backend.password is not None:
        env["PGPASSWORD"] = backend.password
    return argv, env


def _check_numbers(port: int, workers: int) -> None:
    if not 0 < port < 65536:
        raise TrackingServerError(f"--port {port}: expected a TCP port, 1 to 65535")
    if workers < 1:
        raise TrackingServerError(f"--workers {workers}: expected at least 1")


def serve(
    backend_store_uri: str | None, artifacts_destination: str | None, *, host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT, workers: int = DEFAULT_WORKERS, extra_hosts: str | None = None,
    print_command: bool = False,
) -> None:
    """Check everything, print the line the compute nodes export, then become ``mlflow server`` (no return).

    With `print_command`, only the URI and numbers are checked and the command is printed (its password left
    out: give it through PGPASSWORD or ~/.pgpass).
    """
    backend = parse_backend(backend_store_uri)
    _check_numbers(port, workers)
    artifacts = artifacts_path(artifacts_destination)
    argv, env = server_command(backend, artifacts, host=host, port=port, workers=workers, extra_hosts=extra_hosts)
    if print_command:
        shown = {k: v for k, v in env.items() if k != "PGPASSWORD"}
        if backend.password is not None:
            print("# the URI's password is left out: give it in PGPASSWORD or ~/.pgpass", file=sys.stderr)
        print(" ".join([*(f"{k}={shlex.quote(v)}" for k, v in shown.items()), shlex.join(argv)]))
        return
    check_database(backend)  # first: a wrong URI leaves nothing behind
    prepare_artifacts_dir(artifacts)
    check_port_free(host, port)
    url = f"http://{advertised_host(host)}:{port}"
    print(f"MLflow tracking server: runs in PostgreSQL {_masked(backend.uri)}, artifacts in {artifacts}\n"
          f"on the compute nodes:\nexport MLFLOW_TRACKING_URI={url}", flush=True)
    os.execve(argv[0], argv, {**os.environ, **env})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``isdarts tracking-server`` options."""
    parser.add_argument(
        "--backend-store-uri", default=os.environ.get(BACKEND_ENV),
        help=f"postgresql://user[:password]@host[:port]/database (default: ${BACKEND_ENV}); the password may "
        "instead be in PGPASSWORD or ~/.pgpass",
    )
    parser.add_argument(
        "--artifacts-destination", default=os.environ.get(ARTIFACTS_ENV),
        help=f"directory for artifacts, served through the server (default: ${ARTIFACTS_ENV})",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"(default {DEFAULT_WORKERS})")
    parser.add_argument(
        "--allowed-hosts", default=None,
        help="more Host names clients may use, comma-separated (this machine's names and private networks are in)",
    )
    parser.add_argument("--print-command", action="store_true", help="print the mlflow server command and exit")


def serve_from_args(args: argparse.Namespace) -> None:
    """`serve` with the parsed ``isdarts tracking-server`` options."""
    serve(
        args.backend_store_uri, args.artifacts_destination, host=args.host, port=args.port, workers=args.workers,
        extra_hosts=args.allowed_hosts, print_command=args.print_command,
    )
