"""Opening the DuckDB model: the DDL from ``schema/duckdb/model.sql``, the error-code catalogue
shipped as data, and the rollup cursor stored next to the rows it produced."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb

from schema.private_files import private_dir, private_file
from schema.store import Cursor


def ddl() -> str:
    return resources.files("schema").joinpath("duckdb", "model.sql").read_text(encoding="utf-8")


def error_catalogue() -> list[tuple[int, str, str, str]]:
    text = resources.files("schema").joinpath("data", "error_codes.csv").read_text("utf-8")
    return [(int(r["code"]), r["meaning"], r["class"], r["catalogue_version"])
            for r in csv.DictReader(text.splitlines())]


def open_model(path: Path | str) -> duckdb.DuckDBPyConnection:
    """The writer's connection (one process at a time), with the model in place."""
    if isinstance(path, Path):
        private_dir(path.parent)
    con = duckdb.connect(str(path))
    if isinstance(path, Path):
        private_file(path)
    con.execute("SET TimeZone = 'UTC'")
    # No automatic checkpoint inside a batch's commit (it rewrote the tables on every large
    # commit); the worker checkpoints when it publishes a snapshot, once per round.
    con.execute("SET checkpoint_threshold = '8GB'")
    # Bounded memory whatever the backlog: DuckDB spills to disk past this.
    con.execute("SET memory_limit = '512MB'")
    con.execute(ddl())
    con.execute("BEGIN")
    con.execute("DELETE FROM error_codes")
    con.executemany("INSERT INTO error_codes VALUES (?, ?, ?, ?)", error_catalogue())
    con.execute("COMMIT")
    return con


def read_cursor(con: duckdb.DuckDBPyConnection) -> tuple[Cursor, int]:
    row = con.execute("SELECT tx_id, position, events FROM rollup_cursor WHERE id = 1").fetchone()
    if row is None:
        return Cursor(), 0
    return Cursor(int(row[0]), int(row[1])), int(row[2])


def write_cursor(con: duckdb.DuckDBPyConnection, cursor: Cursor, events: int) -> None:
    """Inside the batch's transaction: the cursor moves only with the rows it produced."""
    con.execute("DELETE FROM rollup_cursor")
    con.execute("INSERT INTO rollup_cursor VALUES (1, ?, ?, ?, ?)",
                [cursor.tx_id, cursor.position, events, datetime.now(UTC)])
