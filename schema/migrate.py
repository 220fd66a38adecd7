"""The migration runner: numbered ``.sql`` files under ``schema/migrations`` applied in order.

Each file runs in its own transaction and is recorded with its SHA-256, all under an advisory
lock so that two ingesters starting at once do not both apply it. A file that changed after it
was applied is refused (edit history by adding a migration, never by rewriting one). Running the
runner again applies nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from importlib import resources
from typing import Any

import asyncpg

# Any fixed 64-bit number, the same in every process: "smsledger.migrate".
MIGRATION_LOCK_ID = 0x736D736C6D696772

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk and the ones applied disagree."""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped with the package, in order; a misnamed file is an error."""
    found = []
    for entry in resources.files("schema").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None,
                  ) -> list[Migration]:
    """Apply what is not applied yet; return what was applied now (empty when up to date)."""
    todo = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(_CREATE_LEDGER)
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied: dict[int, Any] = {r["version"]: r for r in rows}
        done = []
        for migration in todo:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{row['name']} was changed after it "
                        "was applied; add a new migration instead of editing an applied one")
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


async def migrate_url(database_url: str) -> list[Migration]:
    conn = await asyncpg.connect(database_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
