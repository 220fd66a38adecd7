"""bench/tick: one worker tick of 5,000 new events on a small and on a 5x larger history, in the
same run: seconds per tick, bytes written per tick (lake files + catalog), and the ratio.

Histories are built with COPY (bench/rollup's generator: 5 events a message) and rolled up
once; then 1,000 new messages (5,000 events) are appended and one `Rollup.run` is timed.
Target: the larger history's tick <= 1.3x the smaller's, and <= 1 s at 5 M messages.
Usage: scripts/bench tick [--messages N] [--profile]
(N: the small history; the large one is 5 N. --profile: the timed tick's slowest statements.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

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


async def measure(url: str, work: Path, lake_dir: Path, have: int, want: int,
                  profile: bool = False) -> tuple[float, int, int]:
    """Grow the history to ``want`` messages, roll it up, then time one 5,000-event tick."""
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
    rollup_bench.generate(csv_path, TICK_MESSAGES, want)
    await rollup_bench.load(url, csv_path)
    # The reader's horizon is cluster-wide: wait until no older transaction holds it back, so
    # the timed tick sees all 5,000 events at once.
    deadline = time.monotonic() + 120
    while not await pg.fetchval("SELECT max(tx_id) < pg_snapshot_xmin(pg_current_snapshot()) "
                                "FROM events"):
        assert time.monotonic() < deadline, "the horizon never passed the new events"
        await asyncio.sleep(0.2)
    files, catalog = dir_bytes(lake_dir), await catalog_bytes(pg, "bench_tick")
    profiled = Profiled(duck)
    if profile:
        rollup.duck = profiled  # type: ignore[assignment]
    started = time.perf_counter()
    result = await rollup.run(pg)
    seconds = time.perf_counter() - started
    if profile:
        print(f"the tick on {want:,} messages ({seconds:.2f} s), slowest statements:")
        profiled.report()
    written = dir_bytes(lake_dir) - files + max(
        0, await catalog_bytes(pg, "bench_tick") - catalog)
    duck.close()
    await pg.close()
    assert result.events == TICK_MESSAGES * 5, result
    return seconds, written, result.events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true",
                        help="print the timed ticks' slowest statements")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smsledger-bench-tick-"))
    try:
        rollup_bench.DB = "smsledger_bench_tick"   # a database of its own
        url, _ = asyncio.run(rollup_bench.setup(args.messages, work, False))
        small = asyncio.run(measure(url, work, work / "lake", 0, args.messages, args.profile))
        big = asyncio.run(measure(url, work, work / "lake", args.messages + TICK_MESSAGES,
                                  5 * args.messages, args.profile))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        asyncio.run(rollup_bench.drop_database())
    print(f"\nbench/tick: one tick of {small[2]:,} new events, 2 cores")
    for label, (seconds, written, _) in ((f"{args.messages:,} messages", small),
                                         (f"{5 * args.messages:,} messages", big)):
        print(f"history {label:>20}: {seconds:6.2f} s, {written / 1e6:8.2f} MB written")
    print(f"ratio large / small: {big[0] / small[0]:.2f}x (target <= 1.3x; <= 1 s at 5 M)")


if __name__ == "__main__":
    main()
