"""Publishing the model for readers by atomic file replace.

DuckDB allows one writer process and no reader in another process while it writes. So the
worker writes a private file and, after each rollup, checkpoints it and copies it to
``analytics.duckdb.tmp``, fsyncs, and ``os.replace``s it over ``analytics.duckdb``. A reader
holding the old file keeps a consistent old snapshot (its inode lives on); the next open sees the
new one whole. Neither side ever waits for the other, and no reader sees half a batch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

WORK_NAME = "analytics-work.duckdb"
SNAPSHOT_NAME = "analytics.duckdb"


def work_path(data_dir: Path) -> Path:
    return data_dir / WORK_NAME


def snapshot_path(data_dir: Path) -> Path:
    return data_dir / SNAPSHOT_NAME


def publish(con: duckdb.DuckDBPyConnection, source: Path, target: Path) -> None:
    con.execute("CHECKPOINT")   # everything committed is in the main file, none in the WAL
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
