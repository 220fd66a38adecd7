"""bench/alerts: what one alert evaluation costs against the history behind it. Two models
with the same traffic rate (so the same messages per window), one holding --short-days of
history and one --long-days; every model-reading detector is evaluated cold (its baselines
read) and warm (baselines cached, as on every tick but one in five minutes). The cost of a warm
tick should follow the window, not the history: the long/short ratio is printed.

Usage: scripts/bench alerts [--rate MSGS_PER_S] [--short-days N] [--long-days N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analytics.alerts import AlertEngine, AlertRules, load_alert_rules  # noqa: E402
from analytics.detectors import DETECTORS, shipped  # noqa: E402
from analytics.model import ddl, error_catalogue, macros  # noqa: E402
from schema.named_sql import script  # noqa: E402

FILL = """
INSERT INTO messages (message_sid, to_number, from_number, category, send_source, status,
                      error_code, segments, sent_at, first_seen_at, first_sent_at,
                      delivered_at, failed_at, sent_or_seen_at, country, carrier)
SELECT 'SM' || lpad(printf('%x', i), 32, '0'),
       '+1415' || lpad((i % 50000)::VARCHAR, 7, '0'),
       ['+15005550006', '+15005550007', '+15005550008'][(1 + i % 3)::BIGINT],
       CASE WHEN i % 3 = 0 THEN 'otp' ELSE 'transactional' END, 'api',
       CASE WHEN i % 20 = 0 THEN 'undelivered' ELSE 'delivered' END,
       CASE WHEN i % 20 = 0 THEN 30003 END, 1,
       t, t, t + INTERVAL 1 SECOND,
       CASE WHEN i % 20 <> 0 THEN t + to_seconds(2 + (i % 7)) END,
       CASE WHEN i % 20 = 0 THEN t + INTERVAL 5 SECOND END, t, 'US',
       -- the carrier of the number, as `numbers` below has it
       ['Verizon Wireless', 'T-Mobile USA, Inc.', 'AT&T Wireless'][(1 + i % 50000 % 3)::BIGINT]
FROM (SELECT i, to_timestamp($end) - to_seconds(($count - i) / $rate) AS t
      FROM range($count) r(i));
INSERT INTO numbers (phone, country, carrier)
SELECT '+1415' || lpad(i::VARCHAR, 7, '0'), 'US',
       ['Verizon Wireless', 'T-Mobile USA, Inc.', 'AT&T Wireless'][(1 + i % 3)::BIGINT]
FROM range(50000) r(i);
INSERT INTO contact_events
SELECT i, 'contact.opted_out', '+1415' || lpad((i * 37 % 50000)::VARCHAR, 7, '0'),
       to_timestamp($end) - to_seconds(i * 600.0), 'STOP'
FROM range(CAST($days * 144 AS BIGINT)) r(i);
"""


def model_rules() -> AlertRules:
    """The shipped rules, without the ingester's (it reads no model)."""
    rules = load_alert_rules(DETECTORS)
    kept = {n: r for n, r in rules.rules.items() if n != "ingest_degraded" and r.enabled}
    return AlertRules(version=rules.version, step_s=rules.step_s, rules=kept)


def build(path: Path, days: float, rate: float, end: float) -> duckdb.DuckDBPyConnection:
    """The model's tables and macros in a plain DuckDB file (the detectors' SQL over the same
    tables; the lake adds catalog round trips per query, which do not grow with history)."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(macros())
    con.execute(ddl())
    con.execute(script("schema", "duckdb/macros.sql"))
    con.executemany("INSERT INTO error_codes VALUES (?, ?, ?, ?)", error_catalogue())
    count = int(days * 86400 * rate)
    for statement in FILL.split(";\n"):
        if statement.strip():
            con.execute(statement, {k: v for k, v in {"end": end, "count": count,
                                                        "rate": rate, "days": days}.items()
                                    if f"${k}" in statement})
    con.execute("CHECKPOINT")
    return con


def timed(engine: AlertEngine, con: duckdb.DuckDBPyConnection, now: datetime,
          rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        engine.observe(con, now)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.5, help="messages per second [0.5]")
    parser.add_argument("--short-days", type=float, default=8, help="[8]")
    parser.add_argument("--long-days", type=float, default=64, help="[64]")
    args = parser.parse_args()
    now = datetime.now(UTC)
    rules = model_rules()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, days in (("short", args.short_days), ("long", args.long_days)):
            con = build(Path(tmp) / f"{label}.duckdb", days, args.rate, now.timestamp())
            messages = con.execute("SELECT count(*) FROM messages").fetchone()
            cold = timed(AlertEngine(rules, shipped()), con, now, 1)   # fresh baselines
            engine = AlertEngine(rules, shipped())
            engine.observe(con, now)                                  # fill the cache
            warm = timed(engine, con, now, 5)
            figures[label] = (messages[0] if messages else 0, cold, warm)
            con.close()
            print(f"{label:5}: {days:g} days, {figures[label][0]:,} messages; one evaluation "
                  f"of {len(rules.rules)} rules: cold {cold * 1000:.0f} ms, warm "
                  f"{warm * 1000:.0f} ms", flush=True)
    (_, cold_s, warm_s), (_, cold_l, warm_l) = figures["short"], figures["long"]
    print(f"long / short: cold {cold_l / cold_s:.2f}x, warm {warm_l / warm_s:.2f}x "
          f"(history {args.long_days / args.short_days:g}x)")


if __name__ == "__main__":
    main()
