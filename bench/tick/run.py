"""bench/tick: worker ticks of 5,000 new events on a small and on a 5x larger history, in the
same run: seconds per tick, bytes written per tick (lake files + catalog), and the ratio.

Histories are built with COPY (bench/rollup's generator: 5 events a message) and rolled up
once; then 1,000 new messages (5,000 events) are appended and one `Rollup.run` is timed (the
first tick after the backlog, on the lake as the backlog left it); then the lake is compacted
as the worker's schedule does every 10 minutes, and --ticks more ticks are timed (median).
Target: the larger history's tick <= 1.3x the smaller's, and <= 1 s at 5 M messages.
Usage: scripts/bench tick [--messages N] [--ticks T] [--profile]
(N: the small history; the large one is 5 N. --profile: the last tick's slowest statements.)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analytics.compact import compact  # noqa: E402
from analytics.hygiene import load_rules  # noqa: E402
from analytics.lake import Lake  # noqa: E402
from analytics.model import open_model  # noqa: E402
from analytics.reader import prepare  # noqa: E402
from analytics.rollup import Rollup  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_rollup", ROOT / "bench/rollup/run.py")
assert _spec is not None and _spec.loader is not None
rollup_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rollup_bench)

TICK_MESSAGES = 1_000   # 5 events each


class Profiled:
    """The rollup's DuckDB connection, timing each statement it runs (--profile)."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.seconds: dict[str, float] = defaultdict(float)

    def execute(self, query: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.con.execute(query, *args)
        finally:
            text = " ".join(line for line in query.splitlines()
                            if not line.lstrip().startswith("--"))
            self.seconds[" ".join(text.split())[:90]] += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def report(self, top: int = 8) -> None:
        for text, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {seconds * 1000:7.0f} ms  {text}")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def catalog_bytes(pg: asyncpg.Connection, schema: str) -> int:
    return int(await pg.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
        "AND c.relkind = 'r'", schema))


async def wait_for_horizon(pg: asyncpg.Connection) -> None:
    """The reader's horizon is cluster-wide: wait until no older transaction holds it back, so
    that a timed tick sees all its events at once."""
    deadline = time.monotonic() + 120
    while not await pg.fetchval("SELECT max(tx_id) < pg_snapshot_xmin(pg_current_snapshot()) "
                                "FROM events"):
        assert time.monotonic() < deadline, "the horizon never passed the new events"
        await asyncio.sleep(0.2)


@dataclasses.dataclass
class Measured:
    after_backlog: float            # the first tick after the history's rollup, uncompacted
    ticks: list[float]              # the timed ticks after the worker's compaction
    written: int                    # bytes written by the timed ticks, in all

    @property
    def median(self) -> float:
        return statistics.median(self.ticks)


async def measure(url: str, work: Path, lake_dir: Path, have: int, want: int,
                  ticks: int, profile: bool = False) -> tuple[Measured, int]:
    """Grow the history to ``want`` messages and roll it up; time one 5,000-event tick, then
    compact the lake as the worker's schedule does and time ``ticks`` more. Returns the
    figures and the messages now in the history."""
    csv_path = work / "events.csv"
    if want > have:
        rollup_bench.generate(csv_path, want - have, have)
        await rollup_bench.load(url, csv_path)
    pg = await asyncpg.connect(url)
    await prepare(pg)
    duck = open_model(Lake(url, "bench_tick", lake_dir))
    rollup = Rollup(duck, load_rules(), batch_size=250_000)
    total = await pg.fetchval("SELECT count(*) FROM events")
    await rollup.run(pg)
    deadline = time.monotonic() + 300
    while duck.execute("SELECT events FROM rollup_cursor").fetchone() != (total,):
        assert time.monotonic() < deadline, "the history's rollup never caught up"
        await asyncio.sleep(0.2)
        await rollup.run(pg)
    messages = want
    seconds: list[float] = []
    written = 0
    for tick in range(ticks + 1):
        if tick == 1:
            # As the worker leaves the lake every compact_every_s (analytics/worker.py): the
            # backlog's mostly-deleted files rewritten, small files merged.
            compact(duck, timedelta(hours=1))
        rollup_bench.generate(csv_path, TICK_MESSAGES, messages)
        await rollup_bench.load(url, csv_path)
        messages += TICK_MESSAGES
        await wait_for_horizon(pg)
        files, catalog = dir_bytes(lake_dir), await catalog_bytes(pg, "bench_tick")
        profiled = Profiled(duck)
        rollup.duck = profiled if profile and tick == ticks else duck  # type: ignore[assignment]
        started = time.perf_counter()
        result = await rollup.run(pg)
        seconds.append(time.perf_counter() - started)
        rollup.duck = duck
        assert result.events == TICK_MESSAGES * 5, result
        if tick:
            written += dir_bytes(lake_dir) - files + max(
                0, await catalog_bytes(pg, "bench_tick") - catalog)
        if profile and tick == ticks:
            print(f"the last tick on {want:,} messages ({seconds[-1]:.2f} s), "
                  "slowest statements:")
            profiled.report()
    duck.close()
    await pg.close()
    return Measured(seconds[0], seconds[1:], written), messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=5,
                        help="ticks timed on each history after its compaction (median shown)")
    parser.add_argument("--profile", action="store_true",
                        help="print the last timed tick's slowest statements")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smsledger-bench-tick-"))
    try:
        rollup_bench.DB = "smsledger_bench_tick"   # a database of its own
        url, _ = asyncio.run(rollup_bench.setup(args.messages, work, False))
        small, have = asyncio.run(measure(url, work, work / "lake", 0, args.messages,
                                          args.ticks, args.profile))
        big, _ = asyncio.run(measure(url, work, work / "lake", have, 5 * args.messages,
                                     args.ticks, args.profile))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        asyncio.run(rollup_bench.drop_database())
    print(f"\nbench/tick: a tick of {TICK_MESSAGES * 5:,} new events, 2 cores; {args.ticks} ticks "
          "timed after the worker's compaction (median, min-max), and the first tick right "
          "after the history's rollup (uncompacted)")
    print(f"{'history':>28} {'median s':>9} {'min-max s':>12} {'MB a tick':>10} "
          f"{'uncompacted s':>14}")
    for label, m in ((f"{args.messages:,} messages", small),
                     (f"{5 * args.messages:,} messages", big)):
        print(f"{label:>28} {m.median:9.2f} {min(m.ticks):5.2f}-{max(m.ticks):<6.2f} "
              f"{m.written / len(m.ticks) / 1e6:10.2f} {m.after_backlog:14.2f}")
    print(f"ratio large / small: {big.median / small.median:.2f}x median, "
          f"{big.after_backlog / small.after_backlog:.2f}x uncompacted "
          "(target <= 1.3x; <= 1 s at 5 M)")


if __name__ == "__main__":
    main()
