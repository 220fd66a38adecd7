"""The analyses, as functions the dashboard and the reports share. Each takes a DuckDB
connection (the published snapshot, read-only) and ``Filters``, and returns a DataFrame.

The SQL is in ``analytics/sql/queries.sql``, by name; the status groups, the verdict order and
the filtered views of messages are macros in ``schema/duckdb/macros.sql``, which ``prepare``
gives each connection once. Every value, filters included, is a bound parameter.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from schema.named_sql import named, script

OTP_SLOW_MEDIAN_S = 8.0   # users start giving up near 10 s

# What delivery_by and otp_latency can group by: columns of the facts_by macro.
DIMENSIONS = ("day", "hourly", "hour", "carrier", "country", "sender", "category")

_prepared: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def sql(name: str) -> str:
    """The query ``name`` of analytics/sql/queries.sql."""
    return named("analytics", "sql/queries.sql")[name]


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con`` with the readers' macros (TEMP: per connection, and a cursor is a connection of
    its own), created the first time it is seen."""
    if con not in _prepared:
        con.execute(script("schema", "duckdb/status.sql"))
        con.execute(script("schema", "duckdb/macros.sql"))
        _prepared.add(con)
    return con


@dataclasses.dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    sender: str | None = None
    category: str | None = None
    country: str | None = None

    def params(self) -> dict[str, Any]:
        """The bound values of ``$start``, ``$end``, ``$sender``, ``$category``,
        ``$country``; an empty choice is no filter."""
        return {"start": self.start, "end": self.end, "sender": self.sender or None,
                "category": self.category or None, "country": self.country or None}


def _df(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any]) -> pd.DataFrame:
    return prepare(con).execute(sql(name), dict(params)).df()


def _dimension(dim: str) -> str:
    if dim not in DIMENSIONS:
        raise KeyError(f"no dimension {dim!r} (one of {', '.join(DIMENSIONS)})")
    return dim


def overview(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> dict[str, Any]:
    row = prepare(con).execute(sql("overview"), f.params()).fetchone()
    assert row is not None
    sends, delivered, failed, otp_p50, segments, canceled, sent_to_carrier = row
    finished = delivered + failed
    return {"sends": sends, "delivered": delivered, "failed": failed, "canceled": canceled,
            "delivery_rate": delivered / finished if finished else None,
            "otp_median_s": otp_p50, "segments": segments or 0,
            "sent_to_carrier": sent_to_carrier}


def funnel(o: Mapping[str, Any]) -> pd.DataFrame:
    """The status funnel of an ``overview``: handed to Twilio, sent to a carrier (a `sent`
    callback or an outcome), delivered."""
    return pd.DataFrame({"stage": ["handed to Twilio", "sent to carrier", "delivered"],
                         "count": [o["sends"], o["sent_to_carrier"], o["delivered"]]})


def delivery_by(con: duckdb.DuckDBPyConnection, dim: str, f: Filters = Filters(),
                ) -> pd.DataFrame:
    """Volume and delivery rate by day, hour, carrier, country, sender or category; the rate
    counts messages with a final outcome only."""
    return _df(con, "delivery_by", {**f.params(), "dim": _dimension(dim)})


def status_funnel(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    return funnel(overview(con, f))


def error_breakdown(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Each error code with its meaning and class, how often, and where it hits."""
    return _df(con, "error_breakdown", f.params())


def error_trend(con: duckdb.DuckDBPyConnection, f: Filters = Filters(),
                period: str = "day") -> pd.DataFrame:
    unit = {"day": "day", "hour": "hour"}[period]
    return _df(con, "error_trend", {**f.params(), "unit": unit})


def otp_latency(con: duckdb.DuckDBPyConnection, by: str | None = None,
                f: Filters = Filters()) -> pd.DataFrame:
    """Send → delivered latency of OTP messages: p50/p90/p99, and ``slow`` where the median
    passes 8 s."""
    frame = _df(con, "otp_latency", {**f.params(), "dim": _dimension(by) if by else "scope"})
    frame["slow"] = frame["p50_s"] > OTP_SLOW_MEDIAN_S
    return frame


def otp_latency_page(con: duckdb.DuckDBPyConnection, f: Filters = Filters(),
                     ) -> dict[str, pd.DataFrame]:
    """``otp_latency`` for all OTPs (``"scope"``), by ``"carrier"``, ``"country"`` and
    ``"hour"``, as the OTP page shows them, from one pass over the messages: each frame as
    ``otp_latency(con, dim, f)`` returns it."""
    frame = _df(con, "otp_latency_sets", f.params())
    out = {}
    for dim in ("scope", "carrier", "country", "hour"):
        part = frame[frame["dim"] == dim].drop(columns="dim").rename(columns={"key": dim})
        if dim == "hour":
            part[dim] = part[dim].astype("int64")
        part["slow"] = part["p50_s"] > OTP_SLOW_MEDIAN_S
        out[dim] = part.reset_index(drop=True)
    return out


def otp_latencies(con: duckdb.DuckDBPyConnection, f: Filters = Filters(),
                  limit: int = 50_000) -> pd.DataFrame:
    """Individual OTP latencies (for a histogram), newest first."""
    return _df(con, "otp_latencies", {**f.params(), "limit": limit})


def _date_range(f: Filters) -> dict[str, Any]:
    """The filters of timeline queries (``events.occurred_at``): the date range only; the
    others describe messages, not events."""
    return {"start": f.start, "end": f.end}


def verify_conversion(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Per day: verifications started, approved, and the share approved."""
    return _df(con, "verify_conversion", _date_range(f))


def otp_conversion(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Per day of sending: OTP messages, those confirmed through /v1/otp/confirm
    (``otp.confirmed``), and the share confirmed: OTP conversion without Verify."""
    return _df(con, "otp_conversion", f.params())


def opt_outs(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Per day and keyword: opt-outs, opt-ins and help requests."""
    return _df(con, "opt_outs", _date_range(f))


def flagged_numbers(con: duckdb.DuckDBPyConnection, verdicts: list[str] | None = None,
                    country: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The numbers the hygiene rules flag, removals first, newest failure first; the first
    ``limit`` of them, or all."""
    return _df(con, "flagged_numbers",
               {"verdicts": verdicts or None, "country": country or None, "limit": limit})


def flagged_counts(con: duckdb.DuckDBPyConnection, country: str | None = None,
                   ) -> dict[str, int]:
    """How many numbers each verdict but ok holds."""
    return {verdict: int(n) for verdict, n in prepare(con).execute(
        sql("flagged_counts"), {"country": country or None}).fetchall()}


def refused_sends(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """Sends that never became messages: refused by smsledger before Twilio was called (opted
    out, suppressed, the fraud guard) or by Twilio at create time (its error code)."""
    return _df(con, "refused_sends", _date_range(f))


def alert_marks(con: duckdb.DuckDBPyConnection, f: Filters = Filters()) -> pd.DataFrame:
    """When alerts opened and resolved, for markers on the trend charts."""
    return _df(con, "alert_marks", _date_range(f))


def timeline(con: duckdb.DuckDBPyConnection, key: str) -> pd.DataFrame:
    """Every event of a message (SID) or a phone number, in log order: the event's own time
    (Twilio's where it gave one: Event Streams, reconcile, backfill) and when it was stored."""
    return _df(con, "timeline", {"key": key, "by_phone": not key.startswith(("SM", "MM"))})


@dataclasses.dataclass(frozen=True)
class Search:
    """What the explorer was asked, read from what a person types: a message SID or its
    prefix, a whole number (with or without +, spaces, dashes, brackets), the last digits of
    a number (as the masked pages show them, ``•••2200``), or a drill-down from another page
    (``error:30003``, ``carrier:…``, ``country:GB``, ``sender:+1…`` or ``sender:MG…``)."""
    kind: str   # sid, sid_prefix, number, digits, error, carrier, country, sender, empty
    value: str

    @classmethod
    def parse(cls, text: str) -> Search:
        raw = text.strip()
        for kind in ("error", "carrier", "country", "sender"):
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
    return _df(con, "find_numbers", {"digits": digits, "limit": limit})


def find_messages(con: duckdb.DuckDBPyConnection, search: Search, limit: int = 200,
                  ) -> pd.DataFrame:
    """The newest messages matching a SID prefix or a drill-down (error code, carrier,
    country, sender)."""
    code = None if search.kind != "error" else (
        int(search.value) if search.value.isdigit() else -1)   # -1: no code matches

    def value_if(kind: str) -> str | None:
        return search.value if search.kind == kind else None

    return _df(con, "find_messages", {"sid_prefix": value_if("sid_prefix"), "code": code,
                                      "carrier": value_if("carrier"),
                                      "country": value_if("country"),
                                      "sender": value_if("sender"), "limit": limit})


def data_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute(sql("data_as_of")).fetchone()
    return row[0] if row else None


def filter_choices(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    row = con.execute(sql("filter_choices")).fetchone()
    assert row is not None
    return {name: [v for v in values or () if v is not None]     # no messages: NULL
            for name, values in zip(("sender", "category", "country"), row, strict=True)}
