"""Opening the published snapshot read-only: what the dashboard and the reports read."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from analytics.publish import snapshot_path


class SnapshotMissing(RuntimeError):
    pass


def current_snapshot(data_dir: Path) -> Path:
    """The file behind ``analytics.duckdb`` now (a new name for every publish)."""
    path = snapshot_path(data_dir)
    if not path.exists():
        raise SnapshotMissing(f"no analytics snapshot at {path} yet: run `smsledger rollup "
                              "--once` or `smsledger worker` first")
    return Path(os.path.realpath(path))


def connect_readonly(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A reader's connection to one snapshot file, times in UTC."""
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def open_snapshot(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return connect_readonly(current_snapshot(data_dir))
