"""The analyses, as functions the dashboard and the reports share. Each takes a DuckDB
connection (the published snapshot, read-only) and ``Filters``, and returns a DataFrame.

Filter values are always bound parameters; the only SQL assembled here is a choice among fixed
fragments (the dimension to group by, the filter clauses in use).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

OTP_SLOW_MEDIAN_S = 8.0   # users start giving up near 10 s

# The final statuses that count as delivered and as failed (fixed SQL fragments). Some segments
# of a partially_delivered message arrived: the handset exists and receives, so it counts as
# delivered. canceled (withdrawn before sending) is neither: it is not in the delivery rate,
# whose denominator is the messages with an outcome, and its segments are not counted as sent.
DELIVERED = "('delivered', 'read', 'partially_delivered')"
FAILED = "('undelivered', 'failed')"

DIMENSIONS = {
    "day": "date_trunc('day', coalesce(sent_at, first_seen_at))",
    "hourly": "date_trunc('hour', coalesce(sent_at, first_seen_at))",
    "hour": "date_part('hour', coalesce(sent_at, first_seen_at))",      # hour of day
    "carrier": "coalesce(carrier, 'unknown')",
    "country": "coalesce(country, 'unknown')",
    "sender": "coalesce(from_number, messaging_service_sid, 'unknown')",
    "category": "coalesce(category, 'unknown')",
}


@dataclasses.dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    sender: str | None = None
    category: str | None = None
    country: str | None = None

    def where(self, time_col: str = "coalesce(sent_at, first_seen_at)",
              ) -> tuple[str, list[Any]]:
        clauses: list[str] = ["true"]
        params: list[Any] = []
        if self.start is not None:
            clauses.append(f"{time_col} >= ?")
            params.append(self.start)
        if self.end is not None:
            clauses.append(f"{time_col} < ?")
            params.append(self.end)
        if self.sender:
            clauses.append("coalesce(from_number, messaging_service_sid) = ?")
            params.append(self.sender)
        if self.category:
            clauses.append("category = ?")
            params.append(self.category)
        if self.country:
            clauses.append("country = ?")
            params.append(self.country)
        return " AND ".join(clauses), params


    def event_where(self) -> tuple[str, list[Any]]:
        """The date range for timeline queries (``events.occurred_at``); the other filters
        describe messages, not events."""
        clauses: list[str] = ["true"]
        params: list[Any] = []
        if self.start is not None:
            clauses.append("occurred_at >= ?")
            params.append(self.start)
        if self.end is not None:
            clauses.append("occurred_at < ?")
            params.append(self.end)
        return " AND ".join(clauses), params


def _df(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> pd.DataFrame:
    return con.execute(query, params).df()


def overview(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> dict[str, Any]:
    where, params = f.where()
    row = con.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE status IN {DELIVERED}),
               count(*) FILTER (WHERE status IN {FAILED}),
               median(latency_s) FILTER (WHERE category = 'otp'),
               sum(segments) FILTER (WHERE status IS DISTINCT FROM 'canceled'),
               count(*) FILTER (WHERE status = 'canceled')
        FROM message_facts WHERE {where}
    """, params).fetchone()  # noqa: S608 (fixed clauses, bound values)
    assert row is not None
    sends, delivered, failed, otp_p50, segments, canceled = row
    finished = delivered + failed
    return {"sends": sends, "delivered": delivered, "failed": failed, "canceled": canceled,
            "delivery_rate": delivered / finished if finished else None,
            "otp_median_s": otp_p50, "segments": segments or 0}


def delivery_by(con: duckdb.DuckDBPyConnection, dim: str, f: Filters = Filters(),
                ) -> pd.DataFrame:
    """Volume and delivery rate by day, hour, carrier, country, sender or category; the rate
    counts messages with a final outcome only."""
    key = DIMENSIONS[dim]
    where, params = f.where()
    return _df(con, f"""
        SELECT {key} AS {dim}, count(*) AS messages,
               count(*) FILTER (WHERE status IN {DELIVERED}) AS delivered,
               count(*) FILTER (WHERE status IN {FAILED}) AS failed,
               delivered / nullif(delivered + failed, 0) AS delivery_rate,
               median(latency_s) AS median_latency_s
        FROM message_facts WHERE {where}
        GROUP BY 1 ORDER BY {"1" if dim in ("day", "hourly", "hour") else "messages DESC"}
    """, params)  # noqa: S608 (key is one of DIMENSIONS, values are bound)


def status_funnel(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    where, params = f.where()
    return _df(con, f"""
        SELECT stage, count FROM (
            SELECT 1 AS o, 'handed to Twilio' AS stage, count(*) AS count
                FROM message_facts WHERE {where}
            UNION ALL SELECT 2, 'sent to carrier', count(*) FROM message_facts
                WHERE {where} AND (first_sent_at IS NOT NULL OR delivered_at IS NOT NULL
                                   OR failed_at IS NOT NULL)
            UNION ALL SELECT 3, 'delivered', count(*) FROM message_facts
                WHERE {where} AND status IN {DELIVERED}
        ) ORDER BY o
    """, params * 3)  # noqa: S608


def error_breakdown(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Each error code with its meaning and class, how often, and where it hits."""
    where, params = f.where()
    return _df(con, f"""
        SELECT error_code, any_value(error_meaning) AS meaning,
               coalesce(any_value(error_class), 'unclassified') AS class,
               count(*) AS messages,
               count(*) / sum(count(*)) OVER () AS share,
               string_agg(DISTINCT coalesce(carrier, 'unknown'), ', ') AS carriers,
               string_agg(DISTINCT coalesce(country, 'unknown'), ', ') AS countries
        FROM message_facts WHERE {where} AND error_code IS NOT NULL
        GROUP BY error_code ORDER BY messages DESC
    """, params)  # noqa: S608


def error_trend(con: duckdb.DuckDBPyConnection, f: Filters = Filters(),
                period: str = "day") -> pd.DataFrame:
    unit = {"day": "day", "hour": "hour"}[period]
    where, params = f.where()
    return _df(con, f"""
        SELECT date_trunc('{unit}', coalesce(failed_at, first_seen_at)) AS period,
               error_code::VARCHAR AS error_code, count(*) AS messages
        FROM message_facts WHERE {where} AND error_code IS NOT NULL
        GROUP BY ALL ORDER BY 1, 2
    """, params)  # noqa: S608


def otp_latency(con: duckdb.DuckDBPyConnection, by: str | None = None,
                f: Filters = Filters()) -> pd.DataFrame:
    """Send → delivered latency of OTP messages: p50/p90/p99, and ``slow`` where the median
    passes 8 s."""
    key = DIMENSIONS[by] if by else "'all'"
    where, params = f.where()
    frame = _df(con, f"""
        SELECT {key} AS {by or 'scope'}, count(*) AS delivered,
               quantile_cont(latency_s, 0.5) AS p50_s, quantile_cont(latency_s, 0.9) AS p90_s,
               quantile_cont(latency_s, 0.99) AS p99_s
        FROM message_facts
        WHERE {where} AND category = 'otp' AND latency_s IS NOT NULL
        GROUP BY 1 ORDER BY {"1" if by in ("hour", "day") else "p50_s DESC"}
    """, params)  # noqa: S608
    frame["slow"] = frame["p50_s"] > OTP_SLOW_MEDIAN_S
    return frame


def otp_latencies(con: duckdb.DuckDBPyConnection, f: Filters = Filters(),
                  limit: int = 50_000) -> pd.DataFrame:
    """Individual OTP latencies (for a histogram), newest first."""
    where, params = f.where()
    return _df(con, f"""
        SELECT latency_s, carrier, country FROM message_facts
        WHERE {where} AND category = 'otp' AND latency_s IS NOT NULL
        ORDER BY sent_at DESC LIMIT ?
    """, [*params, limit])  # noqa: S608


def verify_conversion(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Per day: verifications started, approved, and the share approved."""
    where, params = f.event_where()
    return _df(con, f"""
        SELECT date_trunc('day', occurred_at) AS day,
               count(DISTINCT detail) FILTER (WHERE type = 'verification.started') AS started,
               count(DISTINCT detail) FILTER (WHERE type = 'verification.checked'
                                              AND status = 'approved') AS approved,
               approved / nullif(started, 0) AS conversion
        FROM events WHERE {where} AND type LIKE 'verification.%'
        GROUP BY 1 ORDER BY 1
    """, params)  # noqa: S608


def opt_outs(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Per day and keyword: opt-outs, opt-ins and help requests."""
    where, params = f.event_where()
    return _df(con, f"""
        SELECT date_trunc('day', occurred_at) AS day,
               replace(type, 'contact.', '') AS kind, coalesce(detail, '') AS keyword,
               count(*) AS events
        FROM events
        WHERE {where}
          AND type IN ('contact.opted_out', 'contact.opted_in', 'contact.help_requested')
        GROUP BY ALL ORDER BY 1, 2, 4 DESC
    """, params)  # noqa: S608


def flagged_numbers(con: duckdb.DuckDBPyConnection, verdicts: list[str] | None = None,
                    country: str | None = None) -> pd.DataFrame:
    clauses: list[str] = ["verdict <> 'ok'"]
    params: list[Any] = []
    if verdicts:
        clauses.append("list_contains(?, verdict)")
        params.append(verdicts)
    if country:
        clauses.append("country = ?")
        params.append(country)
    return _df(con, f"""
        SELECT phone, verdict, reason, error_codes, sends, deliveries, failures,
               consecutive_failures, first_failure_at, last_failure_at, last_delivered_at,
               country, carrier, line_type, action
        FROM numbers WHERE {" AND ".join(clauses)}
        ORDER BY CASE verdict WHEN 'remove' THEN 0 WHEN 'unreachable' THEN 1
                 WHEN 'blocked' THEN 2 ELSE 3 END, last_failure_at DESC NULLS LAST
    """, params)  # noqa: S608


def timeline(con: duckdb.DuckDBPyConnection, key: str) -> pd.DataFrame:
    """Every event of a message (SID) or a phone number, in log order: the event's own time
    (Twilio's where it gave one: Event Streams, reconcile, backfill) and when it was stored."""
    return _df(con, """
        SELECT occurred_at, received_at, type, status, error_code, source, message_sid, phone,
               category, detail, position
        FROM events WHERE message_sid = ? OR (? AND phone = ?) ORDER BY position
    """, [key, not key.startswith(("SM", "MM")), key])


@dataclasses.dataclass(frozen=True)
class Search:
    """What the explorer was asked, read from what a person types: a message SID or its
    prefix, a whole number (with or without +, spaces, dashes, brackets), the last digits of
    a number (as the masked pages show them, ``•••2200``), or a drill-down from another page
    (``error:30003``, ``carrier:…``, ``country:GB``)."""
    kind: str          # sid, sid_prefix, number, digits, error, carrier, country, empty
    value: str

    @classmethod
    def parse(cls, text: str) -> Search:
        raw = text.strip()
        for kind in ("error", "carrier", "country"):
            if raw.lower().startswith(kind + ":"):
                return cls(kind, raw[len(kind) + 1:].strip())
        compact = "".join(raw.split()).lstrip("•.*x")
        if compact[:2].upper() in ("SM", "MM"):
            sid = compact[:2].upper() + compact[2:].lower()
            return cls("sid" if len(sid) == 34 else "sid_prefix", sid)
        digits = "".join(ch for ch in compact if ch.isdigit())
        if not digits:
            return cls("empty", "")
        if compact.startswith("+") or len(digits) >= 8:
            return cls("number", "+" + digits)
        return cls("digits", digits)


def find_numbers(con: duckdb.DuckDBPyConnection, digits: str, limit: int = 50,
                 ) -> pd.DataFrame:
    """Numbers whose last digits are ``digits``, most texted first."""
    return _df(con, """
        SELECT phone, country, carrier, sends, verdict FROM numbers
        WHERE suffix(phone, ?) ORDER BY sends DESC, phone LIMIT ?
    """, [digits, limit])


def find_messages(con: duckdb.DuckDBPyConnection, search: Search, limit: int = 200,
                  ) -> pd.DataFrame:
    """The newest messages matching a SID prefix or a drill-down (error code, carrier,
    country)."""
    code = None if search.kind != "error" else (
        int(search.value) if search.value.isdigit() else -1)   # -1: no code matches
    return _df(con, """
        SELECT message_sid, to_number AS phone, status, error_code, carrier, country,
               coalesce(sent_at, first_seen_at) AS sent_at
        FROM message_facts
        WHERE (? IS NULL OR starts_with(message_sid, ?))
          AND (? IS NULL OR error_code = ?)
          AND (? IS NULL OR coalesce(carrier, 'unknown') = ?)
          AND (? IS NULL OR coalesce(country, 'unknown') = ?)
        ORDER BY coalesce(sent_at, first_seen_at) DESC LIMIT ?
    """, [*[search.value if search.kind == "sid_prefix" else None] * 2, code, code,
          *[search.value if search.kind == "carrier" else None] * 2,
          *[search.value if search.kind == "country" else None] * 2, limit])


def data_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute("SELECT updated_at FROM rollup_cursor WHERE id = 1").fetchone()
    return row[0] if row else None


def filter_choices(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    def values(query: str) -> list[str]:
        return [r[0] for r in con.execute(query).fetchall() if r[0] is not None]

    return {"sender": values("SELECT DISTINCT coalesce(from_number, messaging_service_sid) "
                             "FROM messages ORDER BY 1"),
            "category": values("SELECT DISTINCT category FROM messages ORDER BY 1"),
            "country": values("SELECT DISTINCT country FROM numbers ORDER BY 1")}
