"""One SQL convention: named queries in .sql files, read once; no SQL assembled in Python."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from analytics import queries
from schema.named_sql import named, parse

ROOT = Path(__file__).resolve().parent.parent


def test_parse_names_each_query() -> None:
    text = ("-- about the file\n\n-- name: first\n-- why\nSELECT 1;\n\n"
            "-- name: second\nSELECT 2\nFROM t;\n")
    assert parse(text) == {"first": "-- why\nSELECT 1", "second": "SELECT 2\nFROM t"}
    with pytest.raises(ValueError, match="named twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    assert named("analytics", "sql/queries.sql") is named("analytics", "sql/queries.sql")


def test_readers_hold_no_sql_of_their_own() -> None:
    """The readers in scope of the convention keep their SQL in analytics/sql, and the status
    groups and the verdict order are the macros', not spelled out again."""
    for module in ("queries", "report", "reconcile", "enrich"):
        source = (ROOT / "analytics" / f"{module}.py").read_text()
        assert not re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\s", source), module
        assert "S608" not in source, module
    sql = (ROOT / "analytics" / "sql" / "queries.sql").read_text()
    assert "'delivered', 'read'" not in sql and "'undelivered', 'failed'" not in sql
    assert "WHEN 'remove'" not in sql


def test_macros_and_optional_filters(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    con.execute("CREATE TABLE message_facts AS SELECT * FROM (VALUES "
                "('a', 'delivered', 'US', 'otp', TIMESTAMPTZ '2026-11-01 10:00:00+00'), "
                "('b', 'read', 'GB', 'otp', TIMESTAMPTZ '2026-11-02 10:00:00+00'), "
                "('c', 'failed', 'US', 'marketing', TIMESTAMPTZ '2026-11-03 10:00:00+00')) "
                "AS t(from_number, status, country, category, sent_at)")
    con.execute("ALTER TABLE message_facts ADD COLUMN first_seen_at TIMESTAMPTZ")
    con.execute("ALTER TABLE message_facts ADD COLUMN sent_or_seen_at TIMESTAMPTZ")
    con.execute("UPDATE message_facts SET sent_or_seen_at = sent_at")
    con.execute("ALTER TABLE message_facts ADD COLUMN messaging_service_sid VARCHAR")
    queries.prepare(con)
    assert con.execute("SELECT is_delivered('read'), is_delivered('sent'), is_failed('failed'),"
                       " verdict_rank('remove') < verdict_rank('blocked')").fetchone() == (
        True, False, True, True)
    count = "SELECT count(*) FROM facts_in($start, $end, $sender, $category, $country)"
    everything = queries.Filters().params()
    assert con.execute(count, everything).fetchone() == (3,)
    us = queries.Filters(country="US", sender="").params()
    assert con.execute(count, us).fetchone() == (2,)
    both = queries.Filters(country="US", category="otp").params()
    assert con.execute(count, both).fetchone() == (1,)


def test_utc_buckets_equal_date_trunc_before_and_after_1970() -> None:
    """The dashboard's day and hour buckets (arithmetic on the epoch, schema/duckdb/macros.sql)
    are date_trunc's and date_part's in UTC, for times before 1970 as well."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE message_facts (sent_or_seen_at TIMESTAMPTZ, from_number VARCHAR, "
                "messaging_service_sid VARCHAR, category VARCHAR, country VARCHAR, "
                "carrier VARCHAR)")     # what the readers' macros read
    queries.prepare(con)
    rows = con.execute("""
        SELECT count(*) FILTER (WHERE utc_floor(t, 86400000000) <> date_trunc('day', t)
                                   OR utc_floor(t, 3600000000) <> date_trunc('hour', t)
                                   OR utc_hour(t) <> date_part('hour', t)),
               count(*) FILTER (WHERE t < TIMESTAMPTZ '1970-01-01 00:00:00+00')
        FROM (SELECT TIMESTAMPTZ '1969-12-30 00:00:00+00' + to_microseconds(i * 7777777777)
                  AS t
              FROM range(200) r(i)
              UNION ALL SELECT TIMESTAMPTZ '1969-12-31 23:59:59.999999+00'
              UNION ALL SELECT TIMESTAMPTZ '1970-01-01 00:00:00+00')""").fetchone()
    # 23 of the generated times (2.16 h apart from two days before 1970) and 23:59:59.999999
    assert rows == (0, 24)
