"""bench/ingest/postgres.py: PostgreSQL's own CPU per appended status callback.

The group commit's statement (schema/sql/append.sql) against the events table as the
migrations leave it, next to variants of that table or statement, each in a database of its
own. The variants take turns batch by batch (the same rows to each), so a slow spell of the
machine lands on all of them alike; for each, the CPU time its PostgreSQL backend spent
(/proc/<pid>/schedstat, so PostgreSQL must run on this machine) is divided by the events
appended. A commit's fsync is waiting, not CPU: it is not in the figure.

Variants:
  phone_index_on_every_event  the index of migration 0001 that 0003 replaced (every event
                              with a phone indexed by phone)
  no_on_conflict              the same statement without ON CONFLICT DO NOTHING (no duplicate
                              handling: the floor of what deduplication costs)
  no_secondary_indexes        only the primary key and the idempotency key (what the readers'
                              indexes cost)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg
import run as bench  # bench/ingest/run.py: the same database set-up

from schema import store
from schema.sources.webhooks import status_callback
from schema.store import as_json_rows
from smsledger import devdb

APPEND = store.sql("append")
VARIANTS: dict[str, tuple[list[str], str]] = {
    "current": ([], APPEND),
    "phone_index_on_every_event": (
        ["CREATE INDEX events_phone_type ON events (phone, type, position) "
         "WHERE phone IS NOT NULL"], APPEND),
    "no_on_conflict": ([], APPEND.replace("ON CONFLICT (idempotency_key) DO NOTHING", "")),
    "no_secondary_indexes": (
        ["DROP INDEX events_tx_position", "DROP INDEX events_message_sid",
         "DROP INDEX events_contact_phone", "DROP INDEX events_sent_time"], APPEND),
}


def database(variant: str) -> str:
    return f"smsledger_bench_pg_{variant}"


def on_this_machine(pid: int) -> bool:
    return Path(f"/proc/{pid}/schedstat").exists()


def cpu_s(pid: int) -> float:
    """CPU time of process ``pid`` so far (nanoseconds in /proc/<pid>/schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def measure(server: devdb.Database, seconds: float, batch: int) -> dict[str, float]:
    """µs of backend CPU per event, by variant."""
    conns: dict[str, tuple[asyncpg.Connection, int]] = {}
    try:
        for name, (setup, _) in VARIANTS.items():
            conn = await asyncpg.connect(await bench.fresh_database(server, database(name)))
            for statement in setup:
                await conn.execute(statement)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            conns[name] = (conn, pid)
            if not on_this_machine(pid):
                sys.exit("bench/ingest/postgres.py needs PostgreSQL on this machine "
                         "(it reads the backend's CPU time from /proc)")
        used = dict.fromkeys(VARIANTS, 0.0)
        events = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            rows = as_json_rows([status_callback(bench.status_params(f"SM{i:032x}"))
                                 for i in range(events, events + batch)])
            for name, (conn, pid) in conns.items():
                before = cpu_s(pid)
                await conn.fetch(VARIANTS[name][1], rows)
                used[name] += cpu_s(pid) - before
            events += batch
        return {name: spent / events * 1e6 for name, spent in used.items()}
    finally:
        for conn, _ in conns.values():
            await conn.close()
        await bench.drop_databases(server, [database(name) for name in VARIANTS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20,
                        help="how long to append (all variants together)")
    parser.add_argument("--batch", type=int, default=32, help="events per statement")
    args = parser.parse_args()
    if args.batch < 1 or args.seconds <= 0:
        parser.error("--batch and --seconds must be positive")
    server = devdb.find_database(Path(".smsledger"))
    per_event = asyncio.run(measure(server, args.seconds, args.batch))
    print(f"\nbench/ingest postgres: status callbacks appended in batches of {args.batch}, "
          f"{args.seconds:g} s, variants in turn")
    print(f"{'variant':<30}{'backend CPU µs/event':>22}{'/ current':>11}")
    for name, micros in per_event.items():
        print(f"{name:<30}{micros:>22.2f}{micros / per_event['current']:>10.2f}x")


if __name__ == "__main__":
    main()
