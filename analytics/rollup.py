"""The rollup: apply the event log to the DuckDB model, batch by batch, exactly once.

Each batch is applied in one DuckDB transaction together with the cursor that says how far the
log has been applied, and with the set of numbers it touched; those numbers (their stats and
hygiene verdicts) are recomputed once at the end of the run. A crash (kill -9 included)
mid-batch rolls the whole batch back, cursor and all, so the rerun repeats nothing and loses
nothing; a crash before the refresh leaves the dirty set for the next run. While one batch is
applied (in a thread: DuckDB releases the GIL), the next is already being read from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from functools import cache
from importlib import resources

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics import phones as phones_module
from analytics.hygiene import HygieneRules
from analytics.model import read_cursor, write_cursor
from analytics.reader import Batch, fetch_batch

log = logging.getLogger("smsledger.analytics.rollup")


@cache
def statements(name: str) -> list[str]:
    """The statements of ``analytics/sql/<name>.sql`` (split on ';' at line ends)."""
    text = resources.files("analytics").joinpath("sql", f"{name}.sql").read_text("utf-8")
    return [s for s in text.split(";\n") if s.strip() and not all(
        line.strip().startswith("--") or not line.strip() for line in s.splitlines())]


@dataclasses.dataclass
class RollupResult:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0


class Rollup:
    def __init__(self, duck: duckdb.DuckDBPyConnection, rules: HygieneRules, *,
                 batch_size: int = 100_000, crash_after_batches: int = 0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.duck = duck
        self.on_batch = on_batch   # progress: called with each applied batch's event count
        self.rules = rules
        self.batch_size = batch_size
        # Fault injection for the crash tests: SIGKILL ourselves inside the Nth batch's
        # transaction, after its rows are written and before the commit.
        self._crash_after = crash_after_batches
        self._applied = 0
        # Numbers already described, so a batch's new ones are found without scanning
        # number_info; loaded lazily, extended only after a batch commits.
        self._known: set[str] | None = None

    def apply(self, batch: Batch, events_total: int) -> None:
        con = self.duck
        con.execute("BEGIN")
        try:
            con.register("batch", batch.table)
            for name in ("apply_events", "apply_messages", "apply_prices"):
                for statement in statements(name):
                    con.execute(statement)
            described = self._describe_new_numbers(batch)
            for statement in statements("apply_lookups"):
                con.execute(statement)
            con.execute("INSERT INTO dirty_numbers "
                        "SELECT DISTINCT phone FROM batch WHERE phone IS NOT NULL")
            write_cursor(con, batch.after, events_total)
            self._applied += 1
            if self._crash_after and self._applied >= self._crash_after:
                os.kill(os.getpid(), signal.SIGKILL)
            con.execute("COMMIT")
            assert self._known is not None
            self._known.update(described)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("batch")

    def refresh_numbers(self) -> int:
        """Recompute every dirty number (its stats and hygiene verdict) in one transaction.
        Returns how many."""
        con = self.duck
        con.execute("BEGIN")
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE affected AS "
                        "SELECT DISTINCT phone FROM dirty_numbers")
            row = con.execute("SELECT count(*) FROM affected").fetchone()
            count = int(row[0]) if row else 0
            if not count:   # a tick with nothing new writes nothing: no empty snapshot
                con.execute("ROLLBACK")
                return 0
            params = self.rules.sql_params()
            for statement in statements("refresh_numbers"):
                con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
            con.execute("DELETE FROM dirty_numbers")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return count

    def _describe_new_numbers(self, batch: Batch) -> list[str]:
        if self._known is None:
            self._known = {r[0] for r in self.duck.execute(
                "SELECT phone FROM number_info").fetchall()}
        phones = pc.unique(batch.table["phone"].drop_null()).to_pylist()
        new = [p for p in phones if p not in self._known]
        if not new:
            return []
        described = [phones_module.describe(p) for p in new]
        table = pa.table({"phone": new, "country": [d[0] for d in described],
                          "carrier_hint": [d[1] for d in described],
                          "type_hint": [d[2] for d in described]})
        self.duck.register("new_numbers", table)
        try:
            self.duck.execute("INSERT INTO number_info BY NAME SELECT * FROM new_numbers")
        finally:
            self.duck.unregister("new_numbers")
        return new

    async def run(self, pg: asyncpg.Connection, stop: asyncio.Event | None = None,
                  ) -> RollupResult:
        """Apply everything committed so far (or until ``stop`` is set, between batches)."""
        started = time.perf_counter()
        result = RollupResult()
        cursor, total = read_cursor(self.duck)
        pending = asyncio.create_task(fetch_batch(pg, cursor, self.batch_size))
        try:
            while True:
                batch = await pending
                if not len(batch):
                    break
                pending = asyncio.create_task(fetch_batch(pg, batch.after, self.batch_size))
                total += len(batch)
                await asyncio.to_thread(self.apply, batch, total)
                result.events += len(batch)
                result.batches += 1
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                if stop is not None and stop.is_set():
                    break
        finally:
            if not pending.done():
                pending.cancel()
                try:
                    await pending
                except (asyncio.CancelledError, asyncpg.PostgresError, OSError):
                    pass
        # Also after a crash: a previous run's dirty numbers are refreshed by this one.
        await asyncio.to_thread(self.refresh_numbers)
        result.seconds = time.perf_counter() - started
        return result
