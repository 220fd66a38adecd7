"""``smsledger rollup --rebuild``: recompute the model from the whole event log into a new lake,
then switch readers over to it, only once it is complete.

The new lake has a catalog schema and a data folder of its own, so the current model keeps
serving the dashboard (and a running worker keeps extending it) meanwhile. When the rebuild has
caught up with the log, the pointer file is replaced atomically: new readers open the new lake,
and the worker notices at its next round and continues on it. The old lake is left in place
(its schema and folder are named in the log line) for the operator to drop.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import asyncpg

from analytics import lake as lakes
from analytics.hygiene import HygieneRules
from analytics.model import open_model
from analytics.reader import prepare
from analytics.rollup import Rollup, RollupResult

log = logging.getLogger("smsledger.analytics.rebuild")

REBUILD_LOCK_ID = 0x736D736C72656264  # "smslrebd"


class RebuildBusy(RuntimeError):
    pass


class Progress:
    """Events done / total, rate and ETA: a bar redrawn in place on a terminal, a plain line
    every few seconds otherwise (a log file)."""

    def __init__(self, total: int, out: TextIO, every_s: float = 5.0) -> None:
        self.total, self.out, self.every_s = max(total, 1), out, every_s
        self.tty = out.isatty()
        self.started = self.last = time.monotonic()
        self.done = 0

    def line(self) -> tuple[str, float]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:.0f} s" if rate else "?"
        share = min(self.done / self.total, 1.0)
        return (f"{self.done:,}/{self.total:,} events ({share:.0%}), {rate:,.0f} events/s, "
                f"ETA {eta}"), share

    def update(self, events: int) -> None:
        self.done += events
        text, share = self.line()
        if self.tty:
            bar = "#" * int(share * 30)
            self.out.write(f"\rrebuild [{bar:<30}] {text}\033[K")
            self.out.flush()
        elif time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            self.out.write(f"rebuild: {text}\n")
            self.out.flush()

    def finish(self) -> None:
        text, _ = self.line()
        self.out.write(("\n" if self.tty else "") + f"rebuild: done, {text}\n")
        self.out.flush()


async def rebuild(database_url: str, data_dir: Path, rules: HygieneRules, *,
                  batch_size: int = 250_000, out: TextIO | None = None) -> RollupResult:
    out = out or sys.stderr
    pg = await asyncpg.connect(database_url)
    try:
        await prepare(pg)
        if not await pg.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK_ID):
            raise RebuildBusy("another `smsledger rollup --rebuild` is running")
        lakes.make_private_dir(data_dir)
        schema = f"{lakes.DEFAULT_SCHEMA}_{datetime.now(UTC):%Y%m%d%H%M%S}"
        lake = lakes.Lake(database_url, schema, lakes.data_root(data_dir) / schema)
        total = int(await pg.fetchval("SELECT count(*) FROM events"))
        progress = Progress(total, out)
        duck = open_model(lake)
        try:
            result = await Rollup(duck, rules, batch_size=batch_size,
                                  on_batch=progress.update).run(pg)
        finally:
            duck.close()
        progress.finish()
        old = None
        with contextlib.suppress(lakes.SnapshotMissing):
            old = lakes.read_pointer(data_dir, database_url)
        lakes.write_pointer(data_dir, lake)   # readers switch here, to a complete model
        if old is not None:
            log.info("readers now use %s; the previous model (catalog schema %s, files %s) "
                     "can be dropped", schema, old.schema, old.data_path)
        return result
    finally:
        await pg.close()
