"""The lake's upkeep, a scheduled worker job: files mostly deleted rewritten, small per-tick
files merged, old catalog snapshots expired, files no snapshot references any more deleted.

Readers are never blocked: merging writes new files and commits them as a new snapshot, while
a reader's older snapshot keeps its files; files are deleted only once the snapshots that used
them are older than ``keep`` (a reader's query or transaction longer than that would lose its
files: the default keeps an hour). Killed at any point, nothing is lost: each step is a catalog
transaction of its own, a merge that did not commit leaves only unreferenced files, and the
next run deletes those (orphans) and finishes the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta

import duckdb

from analytics.lake import ALIAS

log = logging.getLogger("smsledger.analytics.compact")


@dataclasses.dataclass
class CompactResult:
    flushed_rows: int = 0
    merged_files: int = 0
    rewritten_files: int = 0
    expired_snapshots: int = 0
    deleted_files: int = 0
    seconds: float = 0.0


def compact(con: duckdb.DuckDBPyConnection, keep: timedelta,
            crash_after_merge: bool = False) -> CompactResult:
    """One compaction pass on the writer's connection ``con``."""
    started = time.perf_counter()
    result = CompactResult()
    cutoff = datetime.now(UTC) - keep
    # Rows small commits kept in the catalog itself become Parquet first, so that they merge.
    rows = con.execute("CALL ducklake_flush_inlined_data(?)", [ALIAS]).fetchall()
    result.flushed_rows = sum(int(r[-1] or 0) for r in rows)
    # Files mostly deleted (every tick deletes and rewrites the numbers it touched; a run's
    # pending changes are emptied at its end) are rewritten without their dead rows: scans
    # would otherwise read them and their delete files for ever.
    rows = con.execute("CALL ducklake_rewrite_data_files(?, delete_threshold => 0.5)",
                       [ALIAS]).fetchall()
    result.rewritten_files = sum(int(r[2] or 0) for r in rows)
    rows = con.execute("CALL ducklake_merge_adjacent_files(?)", [ALIAS]).fetchall()
    result.merged_files = sum(int(r[2] or 0) for r in rows)
    if crash_after_merge:   # fault injection for the tests
        import os
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    result.expired_snapshots = len(con.execute(
        "CALL ducklake_expire_snapshots(?, older_than => ?)", [ALIAS, cutoff]).fetchall())
    result.deleted_files = len(con.execute(
        "CALL ducklake_cleanup_old_files(?, older_than => ?)", [ALIAS, cutoff]).fetchall())
    # Files a killed run wrote but never committed; only old ones, never a running commit's.
    result.deleted_files += len(con.execute(
        "CALL ducklake_delete_orphaned_files(?, older_than => ?)",
        [ALIAS, datetime.now(UTC) - min(keep, timedelta(hours=1))]).fetchall())
    result.seconds = time.perf_counter() - started
    return result
