"""Publishing the model for readers by atomic replace.

DuckDB allows one writer process and no reader in another process while it writes. So the
worker writes a private file and, after each rollup, checkpoints it and copies it to a new,
uniquely named file under ``snapshots/``, fsyncs it, and atomically replaces the symlink
``analytics.duckdb`` with one pointing at it. A reader holding an old snapshot keeps a
consistent old view (its file lives on until it closes it); the next open sees the new one
whole. Neither side ever waits for the other, and no reader sees half a batch.

Why a new name each time rather than copying over one path: DuckDB keeps one database instance
per path per process, so a long-lived reader (the dashboard) reopening the same path would be
handed the old instance again. Readers open ``os.path.realpath(analytics.duckdb)``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb

from schema.private_files import private_dir, private_file

WORK_NAME = "analytics-work.duckdb"
SNAPSHOT_NAME = "analytics.duckdb"
KEEP = 3     # older snapshots are deleted; open readers keep theirs until they close it


def work_path(data_dir: Path) -> Path:
    return data_dir / WORK_NAME


def snapshot_path(data_dir: Path) -> Path:
    return data_dir / SNAPSHOT_NAME


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_for_readers(path: Path) -> None:
    """Turn the copy into what the dashboard reads fastest: ``message_facts`` (messages joined
    with their number and error code) becomes a table, ordered by time so that date filters
    skip whole row groups. Only the snapshot pays for this; the worker's file stays lean."""
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN")
        con.execute("CREATE TABLE message_facts_t AS SELECT * FROM message_facts "
                    "ORDER BY coalesce(sent_at, first_seen_at)")
        con.execute("DROP VIEW message_facts")
        con.execute("ALTER TABLE message_facts_t RENAME TO message_facts")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def publish(con: duckdb.DuckDBPyConnection, source: Path, target: Path) -> Path:
    """Publish ``source`` (the writer's file, connection ``con``) at ``target``; return the
    snapshot file now behind it."""
    con.execute("CHECKPOINT")   # everything committed is in the main file, nothing in the WAL
    folder = target.parent / "snapshots"
    private_dir(folder)
    name = f"analytics-{time.time_ns()}.duckdb"
    tmp = folder / (name + ".tmp")
    shutil.copyfile(source, tmp)
    private_file(tmp)   # copyfile makes it with the process umask's mode
    prepare_for_readers(tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / name)
    link = target.with_name(target.name + ".link-tmp")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("snapshots") / name)
    os.replace(link, target)
    _fsync_dir(target.parent)
    for old in sorted(p for p in folder.glob("analytics-*.duckdb"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return folder / name
