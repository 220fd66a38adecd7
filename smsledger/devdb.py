"""Finding a PostgreSQL for the README's commands, or starting a private one.

Order: ``DATABASE_URL`` if set; else a server on 127.0.0.1:5432; else a private cluster started
from the PostgreSQL server binaries under ``$SMSLEDGER_DATA_DIR/pg`` (as the ``postgres`` user
via ``runuser`` when running as root, since PostgreSQL refuses to run as root).

The private cluster listens on no TCP port at all: only on a Unix socket in its own 0700
directory, so no other local account can reach it (it was trust on 127.0.0.1, which made every
local account a superuser able to run programs as the cluster's owner). Within that directory,
trust is safe: only the owner (and root) can open the socket.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from schema.private_files import private_dir, private_file, write_private

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5432


class DatabaseNotFound(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Database:
    url: str           # the server, database `postgres`
    how: str           # "environment", "local server" or "private cluster"
    cluster_dir: Path | None = None

    def url_for(self, dbname: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + dbname))


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_binaries() -> Path:
    """The directory holding ``pg_ctl`` and ``initdb`` (PATH first, then Debian's layout)."""
    for candidate in [shutil.which("initdb"), *sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"),
            key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
            reverse=True)]:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate).parent
    raise DatabaseNotFound(
        "no PostgreSQL reachable (DATABASE_URL unset, nothing on 127.0.0.1:5432) and no "
        "PostgreSQL server binaries (initdb, pg_ctl) found to start a private cluster; install "
        "PostgreSQL (Debian: apt-get install postgresql) or set DATABASE_URL")


def _run_as_owner(args: list[str], owner: str | None) -> subprocess.CompletedProcess[str]:
    if owner is not None:
        args = ["runuser", "-u", owner, "--", *args]
    return subprocess.run(args, check=False, capture_output=True, text=True)


def _cluster_owner() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DatabaseNotFound("running as root with no `postgres` user to run PostgreSQL as")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """A PostgreSQL cluster of our own under ``root`` (``data/``, ``port``, ``server.log``)."""

    def __init__(self, root: Path) -> None:
        self.owner = _cluster_owner()
        self.root = self._home(root.resolve())
        self.data = self.root / "data"

    def _home(self, wanted: Path) -> Path:
        """``wanted``, or, when we run as root and the ``postgres`` user cannot reach it (a
        0700 home or temp directory), a directory of its own named after ``wanted``: the
        server process must be able to traverse every parent of its data directory."""
        if self.owner is None:
            return wanted
        private_dir(wanted)
        reachable = _run_as_owner(["test", "-x", str(wanted)], self.owner).returncode == 0
        if reachable:
            return wanted
        digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
        home = private_dir(Path(tempfile.gettempdir()) / f"smsledger-pg-{digest}")
        write_private(wanted / "LOCATION", f"this cluster lives in {home}\n".encode())
        self._adopt(wanted / "data", home / "data")
        return home

    def _adopt(self, old: Path, new: Path) -> None:
        """A cluster an older smsledger made inside a data directory the ``postgres`` user
        could traverse (0755): now that the data directory is 0700, move it out, stopped."""
        if not (old / "PG_VERSION").exists() or new.exists():
            return
        if (old / "postmaster.pid").exists():
            raise DatabaseNotFound(
                f"the private cluster in {old} is still running from where it can no longer be "
                f"reached; stop it (runuser -u {self.owner} -- pg_ctl -D {old} stop) and run "
                "this again to move it")
        shutil.move(str(old), str(new))

    @property
    def port(self) -> int:
        """Names the socket file (``.s.PGSQL.<port>``); nothing listens on it over TCP."""
        path = self.root / "port"
        if not path.exists():
            write_private(path, str(free_port()).encode())
        return int(path.read_text().strip())

    @property
    def socket_dir(self) -> Path:
        """The 0700 directory of the server's Unix socket: the cluster's own directory, or,
        when that path is too long for a socket address (107 bytes), one under the temp dir."""
        if len(str(self.root / f".s.PGSQL.{self.port}.lock")) <= 100:
            return self.root
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"smsledger-pgsock-{digest}"

    @property
    def url(self) -> str:
        return (f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}"
                f"&port={self.port}")

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            record = pwd.getpwnam(self.owner)
            os.chown(path, record.pw_uid, record.pw_gid)

    def _check(self, what: str, result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            raise DatabaseNotFound(f"{what} failed: {result.stderr.strip() or result.stdout}")

    def start(self) -> None:
        bindir = server_binaries()
        private_dir(self.root)
        self._chown(self.root)
        sockets = self.socket_dir
        if sockets != self.root:
            private_dir(sockets)
            self._chown(sockets)
        if not (self.data / "PG_VERSION").exists():
            # Local (socket) connections only; TCP is off below, and refused here as well.
            self._check("initdb", _run_as_owner(
                [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth-local=trust", "--auth-host=reject", "-E", "UTF8",
                 "--no-instructions"], self.owner))
        if self.running():
            return
        # listen_addresses='' : no TCP socket (also for clusters made by older versions,
        # whose pg_hba.conf trusted 127.0.0.1).
        options = (f"-p {self.port} -k {shlex.quote(str(sockets))} -c listen_addresses='' "
                   "-c unix_socket_permissions=0700")
        self._check("pg_ctl start", _run_as_owner(
            [str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
             "-o", options, "-w", "-t", "60", "start"], self.owner))
        private_file(self.root / "server.log")

    def running(self) -> bool:
        bindir = server_binaries()
        return _run_as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "status"],
                             self.owner).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if not (self.data / "PG_VERSION").exists() or not self.running():
            return
        self._check("pg_ctl stop", _run_as_owner(
            [str(server_binaries() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            self.owner))


def find_database(data_dir: Path, environ: dict[str, str] | None = None,
                  probe: tuple[str, int] = (DEFAULT_HOST, DEFAULT_PORT)) -> Database:
    env = os.environ if environ is None else environ
    if env.get("DATABASE_URL"):
        return Database(env["DATABASE_URL"], "environment")
    if port_open(*probe):
        return Database(f"postgresql://postgres@{probe[0]}:{probe[1]}/postgres", "local server")
    cluster = PrivateCluster(data_dir / "pg")
    cluster.start()
    return Database(cluster.url, "private cluster", cluster.root)


async def ensure_database(server_url: str, dbname: str) -> None:
    """Create ``dbname`` on the server at ``server_url`` unless it exists."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            quoted = '"' + dbname.replace('"', '""') + '"'
            try:
                await conn.execute("CREATE DATABASE " + quoted)
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()
