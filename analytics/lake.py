"""Where the model lives: a DuckLake whose catalog is in the project's PostgreSQL and whose data
files are Parquet under ``SMSLEDGER_DATA_DIR/lake``.

Why DuckLake: every commit is a new catalog snapshot (a few rows in PostgreSQL) plus the
Parquet files it wrote, so a tick writes what its batch changed and nothing more, and any
number of readers in other processes attach the lake read-only and see each commit at once,
never blocking the writer and never needing a copy. One DuckLake transaction commits the rows
of a batch together with the rollup cursor, as one DuckDB file did before.

The extensions are loaded from the installed PyPI packages (``duckdb-extension-ducklake``,
``duckdb-extension-postgres-scanner``) by path: never INSTALLed, never downloaded, with
automatic installing and loading switched off.

The pointer file ``SMSLEDGER_DATA_DIR/analytics.lake`` names the current lake (catalog database
without its password, the catalog's PostgreSQL schema, the data path). Readers open what it
names; a rebuild writes a new lake and then atomically replaces the pointer, which is how
readers are switched over only when the new model is complete.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb

POINTER_NAME = "analytics.lake"
DEFAULT_SCHEMA = "smsledger_lake"
ALIAS = "model"        # the lake's name inside a connection; USE makes its tables unqualified

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SnapshotMissing(RuntimeError):
    """No model has been written yet for this data directory."""


class CatalogUnreachable(RuntimeError):
    """The catalog database cannot be reached; the message holds no password."""


def _extension(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the Python package {package} is missing: reinstall smsledger "
                           "(pip install -e .)")
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: {package} must match duckdb "
                           f"{duckdb.__version__}")
    return str(path)


def extension_paths() -> list[str]:
    return [_extension("duckdb_extension_postgres_scanner", "postgres_scanner"),
            _extension("duckdb_extension_ducklake", "ducklake")]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def redact(text: str, database_url: str) -> str:
    """``text`` with the URL's password, if any, masked (DuckDB errors may echo the ATTACH)."""
    password = urlsplit(database_url).password
    return text.replace(password, "***") if password else text


def strip_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{netloc}"))


def with_password(catalog: str, database_url: str) -> str:
    """The catalog URL with the password of ``database_url`` (from the environment) when both
    name the same server and database: the pointer file never holds a password."""
    if not database_url:
        return catalog
    theirs, ours = urlsplit(database_url), urlsplit(catalog)
    if ((theirs.hostname, theirs.port, theirs.path, theirs.username)
            == (ours.hostname, ours.port, ours.path, ours.username)):
        return database_url
    return catalog


@dataclasses.dataclass(frozen=True)
class Lake:
    database_url: str     # the catalog database (PostgreSQL), password included if any
    schema: str           # the catalog's own PostgreSQL schema
    data_path: Path       # where the Parquet files go

    def __post_init__(self) -> None:
        if not _IDENT.match(self.schema):
            raise ValueError(f"lake schema must be a lower-case identifier, not {self.schema!r}")


def connect(lake: Lake, *, read_only: bool, memory_limit: str = "",
            spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as ``model`` and in USE: the model's tables
    and views resolve by their plain names. Read-only connections cannot write the lake, even
    by a statement a caller failed to refuse. ``spill_dir``: where DuckDB writes what does not
    fit in ``memory_limit`` (else ``.tmp`` in the working directory)."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False, "autoload_known_extensions": False}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if spill_dir is not None:
        config["temp_directory"] = str(spill_dir)
    con = duckdb.connect(":memory:", config=config)
    try:
        for path in extension_paths():
            con.execute(f"LOAD {_quote(path)}")
        con.execute("SET TimeZone = 'UTC'")
        options = [f"DATA_PATH {_quote(str(lake.data_path) + os.sep)}",
                   f"METADATA_SCHEMA {_quote(lake.schema)}"]
        if read_only:
            options.append("READ_ONLY")
        try:
            con.execute(f"ATTACH {_quote('ducklake:postgres:' + lake.database_url)} AS {ALIAS} "
                        f"({', '.join(options)})")
        except duckdb.Error as exc:
            message = redact(str(exc), lake.database_url)
            if "connect" in message.lower() or "connection" in message.lower():
                raise CatalogUnreachable(
                    f"the analytics catalog database {strip_password(lake.database_url)} is "
                    f"unreachable: {message.splitlines()[0]}") from None
            raise RuntimeError(message) from None
        con.execute(f"USE {ALIAS}")
        if read_only:
            # Nothing beyond the lake: a reader (the `query` command above all) touches no
            # file of its own and no other database.
            con.execute("SET allowed_directories = ?", [[str(lake.data_path) + os.sep]])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


# -- the pointer file ------------------------------------------------------------------------

def pointer_path(data_dir: Path) -> Path:
    return data_dir / POINTER_NAME


def read_pointer(data_dir: Path, database_url: str = "") -> Lake:
    path = pointer_path(data_dir)
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SnapshotMissing(f"no analytics snapshot at {path} yet: run `smsledger rollup "
                              "--once` or `smsledger worker` first") from None
    return Lake(with_password(str(raw["catalog"]), database_url or os.environ.get(
        "DATABASE_URL", "")), str(raw["schema"]), Path(raw["data_path"]))


def write_pointer(data_dir: Path, lake: Lake) -> None:
    """Atomically name ``lake`` as the current model (without the password)."""
    text = json.dumps({"catalog": strip_password(lake.database_url), "schema": lake.schema,
                       "data_path": str(lake.data_path)}, indent=1)
    tmp = pointer_path(data_dir).with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, pointer_path(data_dir))
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def data_root(data_dir: Path) -> Path:
    return data_dir / "lake"


def make_private_dir(path: Path) -> None:
    """Parquet files hold phone numbers: their folders are the owner's only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def writer_lake(data_dir: Path, database_url: str, schema: str = "") -> Lake:
    """The lake the writer should use: the current one, else a new one at the default schema
    (or the given one)."""
    if not schema:
        try:
            current = read_pointer(data_dir, database_url)
        except SnapshotMissing:
            schema = DEFAULT_SCHEMA
        else:
            return Lake(database_url, current.schema, current.data_path)
    return Lake(database_url, schema, data_root(data_dir) / schema)
