"""Opening the model for writing: the DuckLake (``analytics/lake.py``) with the DDL from
``schema/duckdb/model.sql``, the error-code catalogue shipped as data, and the rollup cursor
stored next to the rows it produced (one DuckLake transaction commits both)."""

from __future__ import annotations

import csv
import hashlib
import os
from datetime import UTC, datetime
from importlib import resources

import duckdb

from analytics import lake as lakes
from analytics.lake import Lake
from schema.store import Cursor


def ddl() -> str:
    return resources.files("schema").joinpath("duckdb", "model.sql").read_text(encoding="utf-8")


def macros() -> str:
    """The writer's macros: the status groups the readers share, then its own."""
    return "\n".join(resources.files("schema").joinpath("duckdb", name).read_text("utf-8")
                     for name in ("status.sql", "writer_macros.sql"))


def error_catalogue() -> list[tuple[int, str, str, str]]:
    text = resources.files("schema").joinpath("data", "error_codes.csv").read_text("utf-8")
    return [(int(r["code"]), r["meaning"], r["class"], r["catalogue_version"])
            for r in csv.DictReader(text.splitlines())]


WRITER_MEMORY = "320MB"     # DuckDB's memory limit in the writer; see open_model


def without_comments(sql: str) -> str:
    """``sql`` without its comment-only lines: what a digest of SQL text should cover."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def open_model(lake: Lake) -> duckdb.DuckDBPyConnection:
    """The writer's connection (one process at a time: the worker's advisory lock), with the
    model in place. Opening an up-to-date model writes nothing: every open would otherwise be
    a new catalog snapshot."""
    # DuckDB takes no file mode: the Parquet files (phone numbers) and the folders it makes
    # get the process umask, so the writer's process makes everything private.
    os.umask(0o077)
    lakes.make_private_dir(lake.data_path.parent)
    lakes.make_private_dir(lake.data_path)
    # Bounded memory whatever the backlog: DuckDB spills to disk past this, into a private
    # folder beside the lake's files, one per lake (what it spills holds phone numbers; a
    # rebuild writes a second lake while the first is live). 320 MB, not more:
    # the process holds as much again outside DuckDB's account (Python, Arrow, allocator
    # caches); at 5 M messages a backlog's end peaked at 1.25 GB of RSS with 512 MB, 0.91 GB
    # with 320 MB, in the same time (bench/rollup).
    spill = lake.data_path.parent / f"{lake.data_path.name}.spill"
    lakes.make_private_dir(spill)
    con = lakes.connect(lake, read_only=False, memory_limit=WRITER_MEMORY, spill_dir=spill)
    try:
        # The writer's macros too: number_dims() decides what messages carry of their number.
        # Comment lines do not count: a change of wording changes nothing stored.
        digest = hashlib.sha256(
            (without_comments(ddl() + macros()) + repr(error_catalogue())).encode()).hexdigest()
        exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? "
                             "AND table_name = 'model_version'", [lakes.ALIAS]).fetchone()
        if not exists or not exists[0] or con.execute(
                "SELECT ddl_sha256 FROM model_version").fetchall() != [(digest,)]:
            columns = _message_columns(con)
            con.execute("BEGIN")
            con.execute("CREATE TABLE IF NOT EXISTS model_version (ddl_sha256 VARCHAR NOT NULL)")
            con.execute(ddl())
            con.execute(macros())   # after the tables they read
            if columns:
                # A model written by an earlier version (before messages carried their
                # number's country, carrier and line type, or under another number_dims()):
                # its messages take them again, once, here.
                con.execute("UPDATE messages SET country = d.country, carrier = d.carrier, "
                            "line_type = d.line_type FROM number_dims() d "
                            "WHERE messages.to_number = d.phone "
                            "AND (messages.country IS DISTINCT FROM d.country "
                            "OR messages.carrier IS DISTINCT FROM d.carrier "
                            "OR messages.line_type IS DISTINCT FROM d.line_type)")
            if columns and "sent_or_seen_at" not in columns:
                con.execute("UPDATE messages "
                            "SET sent_or_seen_at = coalesce(sent_at, first_seen_at)")
            con.execute("DELETE FROM error_codes")
            con.executemany("INSERT INTO error_codes VALUES (?, ?, ?, ?)", error_catalogue())
            con.execute("DELETE FROM model_version")
            con.execute("INSERT INTO model_version VALUES (?)", [digest])
            con.execute("COMMIT")
        else:
            con.execute(macros())
    except BaseException:
        con.close()
        raise
    return con


def _message_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The columns of ``messages`` as the model stands (none: a new model)."""
    return {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
        "AND table_name = 'messages'", [lakes.ALIAS]).fetchall()}


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
