"""bench/dashboard: with a snapshot of 1 M messages (5 M events, built by the real rollup code
from generated batches; one message every 2.5 s up to now, so 1 M span 29 days and 5 M 145;
compacted as the worker's scheduled compaction leaves it), time each page's queries, with the
dashboard's default date range (the last 30 days) and with none (the whole history), and its
AppTest render (default range), cold (caches cleared) and warm. Targets: <= 300 ms of queries
and <= 1.5 s render per page.

Usage: scripts/bench dashboard [--messages N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as day_start
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analytics import queries  # noqa: E402
from analytics.compact import compact  # noqa: E402
from analytics.hygiene import load_rules  # noqa: E402
from analytics.lake import Lake, data_root, write_pointer  # noqa: E402
from analytics.model import open_model  # noqa: E402
from analytics.reader import COLUMNS, Batch  # noqa: E402
from analytics.rollup import Rollup  # noqa: E402
from analytics.snapshot import open_snapshot  # noqa: E402
from schema.store import Cursor  # noqa: E402

BATCH = """
WITH m AS (
  SELECT i, 'SM' || lpad(printf('%x', i), 32, '0') AS sid,
         ['+1415', '+44740', '+4915', '+336', '+9198', '+5511'][(1 + hash(i) % 6)::BIGINT]
           || lpad((hash(i * 13) % 900000)::VARCHAR, 7, '0') AS phone,
         now() - to_seconds($total * 2.5) + to_seconds(i * 2.5) AS t0,
         (hash(i * 7) % 100)::INTEGER AS roll,
         ['otp', 'transactional', 'marketing'][(1 + hash(i * 3) % 3)::BIGINT] AS category
  FROM range($lo, $hi) r(i)
), e AS (
  SELECT sid, phone, t0 AS t, category, 0 AS k, 'message.sent' AS type, 'queued' AS status,
         NULL::INT AS code FROM m
  UNION ALL SELECT sid, phone, t0 + INTERVAL 100 MILLISECOND, NULL, 1, 'message.status',
         'queued', NULL FROM m
  UNION ALL SELECT sid, phone, t0 + INTERVAL 400 MILLISECOND, NULL, 2, 'message.status',
         'sending', NULL FROM m
  UNION ALL SELECT sid, phone, t0 + INTERVAL 900 MILLISECOND, NULL, 3, 'message.status',
         'sent', NULL FROM m
  UNION ALL SELECT sid, phone, t0 + to_seconds(2 + roll / 8), NULL, 4, 'message.status',
         CASE WHEN roll < 90 THEN 'delivered' WHEN roll < 97 THEN 'undelivered' ELSE 'failed'
         END,
         CASE WHEN roll < 90 THEN NULL WHEN roll < 94 THEN 30003 WHEN roll < 96 THEN 30005
              WHEN roll < 97 THEN 30007 ELSE 30006 END FROM m
)
SELECT (row_number() OVER (ORDER BY sid, k) + $lo * 5)::BIGINT AS position,
       1::UBIGINT AS tx_id, type, CASE WHEN k = 0 THEN 'api' ELSE 'webhook' END AS source,
       sid AS message_sid, phone, status, code::INTEGER AS error_code, t AS occurred_at,
       t AS received_at, category, CASE WHEN k = 0 THEN '+15005550006' END AS from_number,
       NULL::VARCHAR AS service_sid, CASE WHEN k = 0 THEN 1 END::INTEGER AS segments,
       NULL::VARCHAR AS detail, NULL::VARCHAR AS line_type
FROM e ORDER BY position
"""

Q = queries
SID = "SM" + "0" * 31 + "7"
# What each page asks of the snapshot (as in dashboard/views/*.py), with no filters set.
PAGES: dict[str, Callable[[duckdb.DuckDBPyConnection, queries.Filters], Any]] = {
    "overview": lambda c, f: (Q.overview(c, f), Q.delivery_by(c, "day", f),
                              Q.filter_choices(c), Q.data_as_of(c)),
    "errors": lambda c, f: (Q.error_breakdown(c, f), Q.error_trend(c, f, "day"),
                            Q.filter_choices(c)),
    "carriers": lambda c, f: (Q.delivery_by(c, "carrier", f), Q.delivery_by(c, "country", f),
                              Q.filter_choices(c)),
    "otp": lambda c, f: (Q.otp_latency_page(c, f), Q.otp_latencies(c, f),
                         Q.verify_conversion(c, f), Q.filter_choices(c)),
    "unreachable": lambda c, f: (Q.flagged_counts(c, None),
                                 Q.flagged_numbers(c, ["remove", "unreachable", "blocked",
                                                       "opted_out"], None, 5000),
                                 Q.filter_choices(c)),
    "opt_outs": lambda c, f: (Q.opt_outs(c, f), Q.filter_choices(c)),
    "explorer": lambda c, f: (Q.timeline(c, SID), Q.filter_choices(c)),
}


def build(data_dir: Path, messages: int) -> float:
    started = time.perf_counter()
    # The lake's catalog: a database of its own on the server the README's commands find.
    from smsledger import devdb
    server = devdb.find_database(ROOT / ".smsledger")
    import asyncio

    import asyncpg

    async def fresh() -> None:
        conn = await asyncpg.connect(server.url)
        await conn.execute('DROP DATABASE IF EXISTS "smsledger_bench_dashboard" WITH (FORCE)')
        await conn.execute('CREATE DATABASE "smsledger_bench_dashboard"')
        await conn.close()

    asyncio.run(fresh())
    url = server.url_for("smsledger_bench_dashboard")
    lake = Lake(url, "smsledger_lake", data_root(data_dir) / "smsledger_lake")
    con = open_model(lake)
    rollup = Rollup(con, load_rules())
    gen = duckdb.connect()
    step = 100_000
    total = 0
    for lo in range(0, messages, step):
        query = (BATCH.replace("$lo", str(lo)).replace("$hi", str(min(messages, lo + step)))
                 .replace("$total", str(messages)))
        table = gen.execute(query).to_arrow_table()
        table = table.cast(pa.schema(
            [(name, kind) for name, kind in COLUMNS.items()]))
        total += table.num_rows
        rollup.apply(Batch(table, Cursor(1, int(table["position"][-1].as_py()))), total)
        if (lo // step) % 10 == 9:     # the numbers, as at the end of a worker's run
            rollup.flush_numbers()
    rollup.flush_numbers()
    # As the worker's scheduled compaction (analytics/compact.py) leaves a lake: the per-batch
    # files merged, the numbers' mostly-deleted files rewritten.
    compact(con, timedelta(hours=1))
    write_pointer(data_dir, lake)
    con.close()
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="smsledger-bench-dashboard-"))
    try:
        seconds = build(data_dir, args.messages)
        con = open_snapshot(data_dir)
        counts = con.execute("SELECT (SELECT count(*) FROM messages), "
                             "(SELECT count(*) FROM events), (SELECT count(*) FROM numbers)"
                             ).fetchone()
        print(f"snapshot: {counts[0]:,} messages, {counts[1]:,} events, {counts[2]:,} numbers "
              f"(built in {seconds:.0f} s)")
        today = datetime.now(UTC).date()      # the dashboard's default range (common.py)
        default = queries.Filters(
            start=datetime.combine(today - timedelta(days=30), day_start(), UTC),
            end=datetime.combine(today + timedelta(days=1), day_start(), UTC))
        query_ms: dict[str, tuple[float, float]] = {}
        for page, calls in PAGES.items():
            query_ms[page] = (timed(lambda calls=calls: calls(con, default)) * 1000,
                              timed(lambda calls=calls: calls(con, queries.Filters())) * 1000)
        con.close()

        os.environ["SMSLEDGER_DATA_DIR"] = str(data_dir)
        import streamlit as st
        from streamlit.testing.v1 import AppTest

        render: dict[str, tuple[float, float]] = {}
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.run()
        for page in PAGES:
            st.cache_data.clear()
            t = time.perf_counter()
            at.switch_page(f"views/{page}.py").run()
            cold = time.perf_counter() - t
            if at.exception:
                raise SystemExit(f"{page}: {at.exception}")
            t = time.perf_counter()
            at.run()
            render[page] = (cold, time.perf_counter() - t)
        print(f"\nbench/dashboard: {counts[0]:,} messages; queries best of 3, with the default "
              "range (30 days) and the whole history; AppTest render cold (caches cleared) "
              "and warm")
        print(f"{'page':<13}{'ms 30 days':>12}{'ms all':>10}{'render cold s':>15}"
              f"{'render warm s':>15}")
        for page in PAGES:
            print(f"{page:<13}{query_ms[page][0]:>12.0f}{query_ms[page][1]:>10.0f}"
                  f"{render[page][0]:>15.2f}{render[page][1]:>15.2f}")
        print("targets: queries <= 300 ms, render <= 1.5 s per page")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
