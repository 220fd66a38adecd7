"""The alerts as the dashboard shows them, read from the model (the timeline holds every
``alert.opened`` / ``alert.resolved`` with its payload in ``detail``), and one segment's
delivery rate over time for the chart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from schema.named_sql import named

# Not analytics.alerts: that module speaks to PostgreSQL, and the dashboard never imports asyncpg.
SEGMENT_FIELDS = ("carrier", "country", "sender", "prefix", "code")


def queries() -> Mapping[str, str]:
    """``analytics/sql/alert_views.sql`` by its ``-- name:`` headers (read once)."""
    return named("analytics", "sql/alert_views.sql")


def label(segment: dict[str, Any]) -> str:
    return ", ".join(f"{f} {segment[f]}" for f in SEGMENT_FIELDS if segment.get(f)) \
        or "all traffic"

COLUMNS = ["alert_id", "rule", "segment", "state", "opened_at", "resolved_at", "observed",
           "baseline", "sample", "text", "carrier", "country", "sender"]


def alerts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every alert, newest first: open ones have no ``resolved_at``."""
    found: dict[str, dict[str, Any]] = {}
    for kind, received_at, detail in con.execute(queries()["alert_events"]).fetchall():
        try:
            p = json.loads(detail or "")
        except ValueError:
            continue
        if kind == "alert.opened":
            segment = p.get("segment") or {}
            found[p["alert_id"]] = {
                "alert_id": p["alert_id"], "rule": p["rule"], "segment": label(segment),
                "state": "open", "opened_at": received_at, "resolved_at": None,
                "observed": p.get("observed"), "baseline": p.get("baseline"),
                "sample": p.get("sample"), "text": p.get("text", ""),
                "carrier": segment.get("carrier"), "country": segment.get("country"),
                "sender": segment.get("sender")}
        elif kind == "alert.resolved" and p.get("alert_id") in found:
            found[p["alert_id"]].update(state="resolved", resolved_at=received_at)
    frame = pd.DataFrame(list(found.values()), columns=COLUMNS)
    return frame.sort_values("opened_at", ascending=False).reset_index(drop=True)


def segment_series(con: duckdb.DuckDBPyConnection, carrier: str | None, country: str | None,
                   sender: str | None, opened_at: datetime,
                   resolved_at: datetime | None) -> pd.DataFrame:
    """The segment's delivery rate (and OTP median) per 5 minutes, from an hour before the
    alert opened to an hour after it resolved (or now)."""
    def text(value: object) -> str | None:    # pandas hands a missing one as NaN
        return value if isinstance(value, str) and value else None

    carrier, country, sender = text(carrier), text(country), text(sender)
    until = (resolved_at or datetime.now(UTC)) + timedelta(hours=1)
    since = opened_at - timedelta(hours=1)
    frame = con.execute(queries()["segment_series"], {
        "since": since.timestamp(), "until": until.timestamp(), "carrier": carrier,
        "country": country, "sender": sender}).df()
    if frame.empty:
        return frame
    frame["delivery_rate"] = frame["delivered"] / frame["final"].where(frame["final"] > 0)
    return frame
