"""Opening the published snapshot read-only: what the dashboard and the reports read."""

from __future__ import annotations

from pathlib import Path

import duckdb

from analytics.publish import snapshot_path


class SnapshotMissing(RuntimeError):
    pass


def open_snapshot(data_dir: Path) -> duckdb.DuckDBPyConnection:
    path = snapshot_path(data_dir)
    if not path.exists():
        raise SnapshotMissing(f"no analytics snapshot at {path} yet: run `smsledger rollup "
                              "--once` or `smsledger worker` first")
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con
