"""bench/rollup: 5 M events (1 M messages) loaded with COPY, then in the same run:

1. the raw rate of `COPY (SELECT <the rollup's columns>) TO STDOUT` — the baseline;
2. the rollup from scratch into the DuckDB model (events/s, and its ratio to 1.);
3. the incremental cost of 50 k new events on top;
4. the rollup process's peak RSS.

Targets: rollup >= 0.7x raw COPY-out, 50 k incremental <= 1 s, peak RSS <= 1 GB (at 5 M
messages: --messages 5000000).
Usage: scripts/bench rollup [--messages N] [--batch-size N] [--reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analytics.hygiene import load_rules  # noqa: E402
from analytics.lake import Lake  # noqa: E402
from analytics.model import open_model  # noqa: E402
from analytics.reader import prepare  # noqa: E402
from analytics.rollup import Rollup  # noqa: E402
from schema.migrate import migrate_url  # noqa: E402
from schema.store import sql  # noqa: E402
from smsledger import devdb  # noqa: E402

DB = "smsledger_bench_rollup"

# Five events a message: the send, then queued, sending, sent and the final status callbacks,
# written in the order they happen (messages start every 2 s of simulated time).
GENERATE = """
COPY (
  WITH m AS (
    SELECT i, 'SM' || md5(i::VARCHAR) AS sid,   -- random, as Twilio's are
           '+1415' || lpad((hash(i) % 300000)::VARCHAR, 7, '0') AS phone,
           TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i * 2) AS t0,
           (hash(i * 7) % 100)::INTEGER AS roll,
           ['otp', 'transactional', 'marketing'][(1 + hash(i * 3) % 3)::BIGINT] AS category
    FROM range($offset, $offset + $count) r(i)   -- message numbers: later ones, later times
  ), e AS (
    SELECT sid, phone, t0, category, 0 AS k, 'message.sent' AS type, 'queued' AS status,
           NULL::INT AS code FROM m
    UNION ALL SELECT sid, phone, t0 + INTERVAL 100 MILLISECOND, category, 1, 'message.status',
           'queued', NULL FROM m
    UNION ALL SELECT sid, phone, t0 + INTERVAL 400 MILLISECOND, category, 2, 'message.status',
           'sending', NULL FROM m
    UNION ALL SELECT sid, phone, t0 + INTERVAL 900 MILLISECOND, category, 3, 'message.status',
           'sent', NULL FROM m
    UNION ALL SELECT sid, phone, t0 + to_seconds(2 + roll / 10), category, 4, 'message.status',
           CASE WHEN roll < 90 THEN 'delivered' WHEN roll < 97 THEN 'undelivered'
                ELSE 'failed' END,
           CASE WHEN roll < 90 THEN NULL WHEN roll < 94 THEN 30003 WHEN roll < 96 THEN 30005
                WHEN roll < 97 THEN 30007 ELSE 30006 END FROM m
  )
  SELECT type || ':' || sid || ':' || status || ':' || coalesce(code::VARCHAR, '') || ':' || k
             AS idempotency_key,
         type, 1 AS version, CASE WHEN k = 0 THEN 'api' ELSE 'webhook' END AS source, sid,
         phone, status, code, t0 AS occurred_at, t0 AS received_at,
         CASE WHEN k = 0 THEN json_object('sid', sid, 'to', phone, 'from', '+15005550006',
                                          'category', category, 'tags', [], 'segments', 1,
                                          'media_count', 0, 'initial_status', 'queued')
              ELSE json_object('MessageSid', sid, 'SmsSid', sid, 'MessageStatus', status,
                               'SmsStatus', status, 'AccountSid', 'AC' || repeat('0', 32),
                               'From', '+15005550006', 'To', phone, 'ApiVersion', '2010-04-01',
                               'ErrorCode', coalesce(code::VARCHAR, ''))
         END AS payload
  FROM e
  -- In time order, as a real log is: a message's callbacks follow its send by seconds.
  ORDER BY t0, k
) TO '$path' (HEADER false, DELIMITER ',')
"""

COLUMNS = ["idempotency_key", "type", "version", "source", "message_sid", "phone", "status",
           "error_code", "occurred_at", "received_at", "payload"]


def generate(path: Path, count: int, offset: int) -> None:
    query = (GENERATE.replace("$count", str(count)).replace("$offset", str(offset))
             .replace("$path", str(path)))
    duckdb.connect().execute(query)


async def load(url: str, path: Path) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.copy_to_table("events", source=str(path), columns=COLUMNS, format="csv")
        seconds = time.perf_counter() - started
        # Planner statistics, as autovacuum keeps them on a live store (without them the
        # rollup's lookup of its batch's SIDs is planned for a table of unknown shape).
        await conn.execute("ANALYZE events")
        return seconds
    finally:
        await conn.close()


class Sink:
    def __init__(self) -> None:
        self.bytes = 0

    async def __call__(self, chunk: bytes) -> None:
        self.bytes += len(chunk)


async def raw_copy_out(url: str) -> tuple[int, float]:
    conn = await asyncpg.connect(url)
    try:
        await prepare(conn)
        total = await conn.fetchval("SELECT count(*) FROM events")
        sink = Sink()
        started = time.perf_counter()
        await conn.copy_from_query(sql("rollup_batch"), "0", 0, total + 1, output=sink,
                                   format="csv")
        return int(total), time.perf_counter() - started
    finally:
        await conn.close()


def peak_rss_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:")))


async def child(url: str, model: str, batch_size: int) -> None:
    pg = await asyncpg.connect(url)
    await prepare(pg)
    duck = open_model(Lake(url, "bench_lake", Path(model)))
    result = await Rollup(duck, load_rules(), batch_size=batch_size).run(pg)
    duck.close()
    await pg.close()
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child would report
    # its parent's high-water mark (the parent sorts the generated log in memory).
    hwm_kb = peak_rss_kb()
    print(json.dumps({"events": result.events, "seconds": result.seconds,
                      "rss_mb": hwm_kb / 1024}))


def run_child(url: str, model: Path, batch_size: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", url, str(model),
                          str(batch_size)], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


async def setup(messages: int, work: Path, reuse: bool) -> tuple[str, bool]:
    """The bench's database, new; with ``reuse``, the one an earlier run left if it holds
    this many messages' events and nothing more (True: it does, its log is loaded)."""
    server = devdb.find_database(ROOT / ".smsledger")
    url = server.url_for(DB)
    conn = await asyncpg.connect(server.url)
    try:
        if reuse and await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", DB):
            bench = await asyncpg.connect(url)
            try:
                stored = await bench.fetchval("SELECT count(*) FROM events")
                await bench.execute("DROP SCHEMA IF EXISTS bench_lake CASCADE")
            finally:
                await bench.close()
            if stored == messages * 5:
                return url, True
            print(f"--reuse: {DB} holds {stored:,} events, not {messages * 5:,}: loading anew")
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await conn.close()
    await migrate_url(url)
    return url, False


async def last_position(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT max(position) FROM events"))
    finally:
        await conn.close()


async def drop_increment(url: str, last: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        # The log refuses DELETE (its trigger): the bench's own database, so the trigger
        # is set aside for this one statement, in one transaction.
        async with conn.transaction():
            await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
            await conn.execute("DELETE FROM events WHERE position > $1", last)
            await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
        await conn.execute("DROP SCHEMA IF EXISTS bench_lake CASCADE")
    finally:
        await conn.close()


async def drop_database() -> None:
    server = devdb.find_database(ROOT / ".smsledger")
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=250_000)
    parser.add_argument("--reuse", action="store_true",
                        help=f"keep the log an earlier run loaded into {DB} (the same "
                             "--messages): loading 5 M messages takes ~20 min; the database is "
                             "left for the next --reuse, dropped otherwise")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smsledger-bench-rollup-"))
    url, loaded = asyncio.run(setup(args.messages, work, args.reuse))
    csv_path = work / "events.csv"
    if not loaded:
        t = time.perf_counter()
        generate(csv_path, args.messages, 0)
        gen_s = time.perf_counter() - t
        load_s = asyncio.run(load(url, csv_path))
        print(f"generated {args.messages * 5:,} events ({args.messages:,} messages) in "
              f"{gen_s:.1f} s; COPY in {load_s:.1f} s ({args.messages * 5 / load_s:,.0f} "
              "events/s)", flush=True)
    events, copy_s = asyncio.run(raw_copy_out(url))
    model = work / "lake"
    full = run_child(url, model, args.batch_size)
    increment = args.messages // 100   # 5 events each: 50 k events per 1 M messages
    generate(csv_path, increment, args.messages)
    last = asyncio.run(last_position(url))
    asyncio.run(load(url, csv_path))
    inc = run_child(url, model, args.batch_size)
    if args.reuse:     # the increment out again: the next --reuse finds the log as loaded
        asyncio.run(drop_increment(url, last))
    else:
        asyncio.run(drop_database())
    raw_rate = events / copy_s
    rate = full["events"] / full["seconds"]
    print(f"\nbench/rollup: {events:,} events, batch {args.batch_size:,}, 2 cores")
    print(f"raw COPY (SELECT rollup columns) TO STDOUT: {raw_rate:>12,.0f} events/s "
          f"({copy_s:.1f} s)")
    print(f"rollup from scratch into the lake:         {rate:>12,.0f} events/s "
          f"({full['seconds']:.1f} s) = {rate / raw_rate:.2f}x raw (target >= 0.7)")
    print(f"incremental {inc['events']:,} events:                 {inc['seconds']:>12.2f} s "
          "(target <= 1 s)")
    print(f"peak RSS of the rollup process:            {full['rss_mb']:>12,.0f} MB "
          "(target <= 1024)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
