"""bench/faults: the fault suite's scenarios, heavier — more requests, several kill -9 rounds,
a longer PostgreSQL outage — on a private PostgreSQL cluster of its own, loopback only, bounded
in count. Prints what was sent, acknowledged and stored, and the events lost (must be 0).

Usage: scripts/bench faults [--requests N] [--kills K]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from schema.migrate import migrate_url  # noqa: E402
from smsledger import devdb  # noqa: E402
from smsledger.devdb import free_port  # noqa: E402
from tests.faults.test_faults import (  # noqa: E402
    ingester,
    load,
    stored_once,
    wait_ready,
)


async def kills(db_url: str, work: Path, requests: int, rounds: int) -> tuple[int, int, int]:
    port = free_port()
    sids = [f"SM{i:032x}" for i in range(requests)]
    acked: set[str] = set()
    chunk = requests // (rounds + 1)
    for r in range(rounds + 1):
        part = sids[r * chunk:(r + 1) * chunk] if r < rounds else sids[r * chunk:]
        with ingester(db_url, work, port) as proc:
            await wait_ready(port)
            sending = asyncio.create_task(load(port, part, acked, concurrency=64))
            if r < rounds:
                target = len(acked) + len(part) // 2
                while len(acked) < target and not sending.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                proc.send_signal(signal.SIGKILL)
            await sending
    missing, twice = await stored_once(db_url, acked)
    return len(acked), missing, twice


async def outage(cluster: devdb.PrivateCluster, db_url: str, work: Path, requests: int,
                 ) -> tuple[int, int, int, float]:
    port = free_port()
    sids = [f"SN{i:032x}" for i in range(requests)]
    acked: set[str] = set()
    third = requests // 3
    with ingester(db_url, work, port):
        await wait_ready(port)
        await load(port, sids[:third], acked, concurrency=64)
        await asyncio.to_thread(cluster.stop, "immediate")
        await load(port, sids[third:2 * third], acked, concurrency=64)
        await asyncio.to_thread(cluster.start)
        started = time.monotonic()
        await load(port, sids[2 * third:], acked, concurrency=64)
        while (await stored_once(db_url, acked))[0]:  # noqa: ASYNC110 (polls the store)
            await asyncio.sleep(0.2)
        drained = time.monotonic() - started
    missing, twice = await stored_once(db_url, acked)
    return len(acked), missing, twice, drained


async def main(requests: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="smsledger-bench-faults-"))
    cluster = devdb.PrivateCluster(work / "pg")
    cluster.start()
    try:
        await devdb.ensure_database(cluster.url, "faults")
        db_url = devdb.Database(cluster.url, "private cluster").url_for("faults")
        await migrate_url(db_url)
        acked, missing, twice = await kills(db_url, work, requests, rounds)
        print(f"kill -9 x{rounds} under load: {requests:,} sent, {acked:,} acknowledged, "
              f"{missing} acknowledged but missing, {twice} stored twice")
        acked, missing, twice, drained = await outage(cluster, db_url, work, requests)
        print(f"PostgreSQL stopped for a third of {requests:,} requests: {acked:,} "
              f"acknowledged, {missing} missing, {twice} stored twice; spool drained "
              f"{drained:.1f} s after restart")
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.kills))
