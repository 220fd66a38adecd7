"""What messages cost: Twilio's final price where it has arrived, an estimate from the price
table until then (always shown apart), failed-message fees, wasted spend, and what the current
hygiene report would save a month. Query functions on the model (a snapshot connection), like
``analytics.queries``; the SQL is ``analytics/sql/cost.sql``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from analytics.prices import PriceTable
from schema.named_sql import named

BY = ("day", "sender", "category", "country", "carrier")
# The csv/json columns of `smsledger report cost`, in order.
REPORT_COLUMNS = ["key", "messages", "segments", "delivered", "priced", "estimated_usd",
                  "final_usd", "total_usd", "failed_fees_usd", "wasted_usd"]
SAVING_WINDOW = timedelta(days=30)


def _queries() -> Mapping[str, str]:
    return named("analytics", "sql/cost.sql")


def _params(query: str, prices: PriceTable, **values: Any) -> dict[str, Any]:
    """The parameters ``query`` names (DuckDB refuses unused named parameters)."""
    every = {**prices.sql_params(), **values}
    return {k: v for k, v in every.items() if f"${k}" in query}


def cost_by(con: duckdb.DuckDBPyConnection, prices: PriceTable, by: str = "day",
            since: datetime | None = None, until: datetime | None = None, *,
            sender: str | None = None, category: str | None = None,
            country: str | None = None) -> pd.DataFrame:
    """Spend per day, sender, category, country or carrier (``by``; anything else: one row
    ``all``), by send time in [since, until), optionally of one sender, category, country."""
    query = _queries()["cost_by"]
    frame: pd.DataFrame = con.execute(query, _params(
        query, prices, by=by, since=since, until=until, sender=sender, category=category,
        country=country)).df()
    return frame


def verify_cost(con: duckdb.DuckDBPyConnection, prices: PriceTable,
                since: datetime | None = None, until: datetime | None = None,
                ) -> dict[str, Any]:
    query = _queries()["verify_cost"]
    row = con.execute(query, _params(query, prices, since=since, until=until)).fetchone()
    assert row is not None
    started, approved, channel, fees = row
    return {"started": int(started), "approved": int(approved),
            "channel_usd": float(channel or 0), "verify_fees_usd": float(fees or 0)}


@dataclasses.dataclass(frozen=True)
class CostSummary:
    currency: str
    prices_version: str
    messages: int
    delivered: int
    priced: int
    estimated_usd: float
    final_usd: float
    total_usd: float
    failed_fees_usd: float
    wasted_usd: float
    per_delivered_usd: float | None
    per_delivered_otp_usd: float | None
    verifications_started: int
    verifications_approved: int
    verify_usd: float
    per_approved_verification_usd: float | None
    monthly_saving_usd: float      # spend of the last 30 days on numbers hygiene would remove

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ratio(amount: float, count: int) -> float | None:
    return amount / count if count else None


def summary(con: duckdb.DuckDBPyConnection, prices: PriceTable,
            since: datetime | None = None, until: datetime | None = None,
            now: datetime | None = None) -> CostSummary:
    """The totals, the unit costs (per delivered message, per delivered OTP, per approved
    verification) and the monthly saving of the current hygiene report."""
    every = cost_by(con, prices, "all", since, until)
    row = every.iloc[0] if len(every) else None

    def total(name: str) -> float:
        return float(row[name]) if row is not None else 0.0

    def count(name: str) -> int:
        return int(row[name]) if row is not None else 0

    verify = verify_cost(con, prices, since, until)
    verify_usd = verify["channel_usd"] + verify["verify_fees_usd"]
    end = now or datetime.now(UTC)
    last_month = cost_by(con, prices, "all", end - SAVING_WINDOW, end)
    saving = float(last_month.iloc[0]["removable_usd"]) if len(last_month) else 0.0
    return CostSummary(
        currency=prices.currency, prices_version=prices.version, messages=count("messages"),
        delivered=count("delivered"), priced=count("priced"),
        estimated_usd=total("estimated_usd"), final_usd=total("final_usd"),
        total_usd=total("total_usd"), failed_fees_usd=total("failed_fees_usd"),
        wasted_usd=total("wasted_usd"),
        per_delivered_usd=_ratio(total("total_usd"), count("delivered")),
        per_delivered_otp_usd=_ratio(total("otp_usd"), count("otp_delivered")),
        verifications_started=verify["started"], verifications_approved=verify["approved"],
        verify_usd=verify_usd,
        per_approved_verification_usd=_ratio(verify_usd, verify["approved"]),
        monthly_saving_usd=saving)
