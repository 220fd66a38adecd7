"""Opening the model read-only: what the dashboard, the reports and ``smsledger query`` read.

There is no copy to open: a reader attaches the current lake (named by the pointer file in the
data directory) read-only and sees its latest commit. Each query runs in its own transaction,
i.e. on one catalog snapshot: a long query is never torn by commits made meanwhile, and it
never holds the writer up.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from analytics import lake as lakes
from analytics.lake import CatalogUnreachable, SnapshotMissing

__all__ = ["CatalogUnreachable", "SnapshotMissing", "current_version", "open_snapshot",
           "use_model"]


def open_snapshot(data_dir: Path, database_url: str = "") -> duckdb.DuckDBPyConnection:
    """A read-only connection on which the model's tables and views resolve by their plain
    names (``messages``, ``numbers``, ``message_facts``, ...), times in UTC. The catalog's
    password, if it has one, comes from ``database_url`` or else ``DATABASE_URL``.

    Raises SnapshotMissing before the first rollup, CatalogUnreachable when the catalog
    database does not answer."""
    return lakes.connect(lakes.read_pointer(data_dir, database_url), read_only=True)


def use_model(cursor: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of a reader's connection (a connection of its own: DuckDB's ``USE`` is per
    connection) made to resolve the model's names too."""
    cursor.execute(f"USE {lakes.ALIAS}")   # the time zone (UTC) is the connection's already
    return cursor


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The newest catalog snapshot this reader sees: it changes with every commit."""
    row = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots(?)",
                      [lakes.ALIAS]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
