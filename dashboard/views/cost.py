"""Cost: spend over time, by country and sender, wasted spend, and estimated against final
(Twilio's price arrives up to 24 h after sending; until then the price table estimates)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from analytics import cost
from analytics.prices import PriceTable, load_prices
from analytics.queries import Filters
from dashboard.common import connection, empty_state, page_context, settings


@st.cache_resource
def price_table() -> PriceTable:
    return load_prices(settings().prices)


@st.cache_data(ttl=300, max_entries=200, show_spinner=False)
def spend(path: str, by: str, f: Filters) -> pd.DataFrame:
    """``analytics.cost.cost_by``, cached per snapshot file (a new snapshot, a new path)."""
    return cost.cost_by(connection(path), price_table(), by, f.start, f.end, sender=f.sender,
                        category=f.category, country=f.country)


@st.cache_data(ttl=300, max_entries=50, show_spinner=False)
def totals(path: str, f: Filters) -> dict[str, Any]:
    return cost.summary(connection(path), price_table(), f.start, f.end).as_dict()


def money(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"${value:,.4f}"


path, filters = page_context()
prices = price_table()
st.header("Cost")
every = spend(path, "all", filters)
if every.empty:
    empty_state("messages")
    st.stop()
row = every.iloc[0]
s = totals(path, filters)
st.caption(f"Final amounts are Twilio's own price (it arrives up to 24 h after sending); "
           f"estimates come from the price table **{prices.version}** ({prices.currency}) and "
           "are replaced as final prices arrive.")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Spend", money(row["total_usd"]))
c2.metric("Final (Twilio's price)", money(row["final_usd"]),
          help=f"{int(row['priced']):,} of {int(row['messages']):,} messages priced by Twilio")
c3.metric("Estimated", money(row["estimated_usd"]),
          help="messages Twilio has not priced yet, from the price table")
c4.metric("Failed-message fees", money(row["failed_fees_usd"]))
c1, c2, c3, c4 = st.columns(4)
c1.metric("Wasted", money(row["wasted_usd"]),
          help="spend on messages not delivered, and on numbers hygiene says to remove")
c2.metric("Per delivered message", money(s["per_delivered_usd"]))
c3.metric("Per delivered OTP", money(s["per_delivered_otp_usd"]))
c4.metric("Per approved verification", money(s["per_approved_verification_usd"]))
st.info(f"The current hygiene report would save **{money(s['monthly_saving_usd'])} a month**: "
        "the last 30 days' spend on numbers whose verdict is remove or unreachable.")

st.subheader("Spend over time")
daily = spend(path, "day", filters)
long = daily.melt(id_vars=["key"], value_vars=["final_usd", "estimated_usd"], var_name="kind",
                  value_name="usd")
long["kind"] = long["kind"].map({"final_usd": "final", "estimated_usd": "estimated"})
st.altair_chart(alt.Chart(long).mark_bar().encode(
    x=alt.X("key:T", title="day (UTC)"), y=alt.Y("usd:Q", title=prices.currency),
    color=alt.Color("kind:N", title="", scale=alt.Scale(domain=["final", "estimated"],
                                                         range=["#1565c0", "#90caf9"]))),
    width="stretch")

CONFIG = {c: st.column_config.NumberColumn(c.replace("_usd", "").replace("_", " "),
                                           format="$%.4f")
          for c in ("estimated_usd", "final_usd", "total_usd", "failed_fees_usd",
                    "wasted_usd", "removable_usd", "otp_usd")}
SHOWN = ["key", "messages", "segments", "delivered", "priced", "total_usd", "final_usd",
         "estimated_usd", "failed_fees_usd", "wasted_usd"]
left, right = st.columns(2)
for column, (dim, title) in zip((left, right), (("country", "By country"),
                                                ("sender", "By sender")), strict=True):
    with column:
        st.subheader(title)
        st.dataframe(spend(path, dim, filters)[SHOWN], hide_index=True, width="stretch",
                     column_config={"key": st.column_config.TextColumn(dim), **CONFIG})
left, right = st.columns(2)
for column, (dim, title) in zip((left, right), (("carrier", "By carrier"),
                                                ("category", "By category")), strict=True):
    with column:
        st.subheader(title)
        st.dataframe(spend(path, dim, filters)[SHOWN], hide_index=True, width="stretch",
                     column_config={"key": st.column_config.TextColumn(dim), **CONFIG})

st.subheader("Wasted spend")
by_country = spend(path, "country", filters)
wasted = by_country[by_country["wasted_usd"] > 0][["key", "wasted_usd", "removable_usd",
                                                   "total_usd"]]
if wasted.empty:
    st.success("No spend on undelivered messages or on numbers to remove in this range.")
else:
    wasted = wasted.assign(share=wasted["wasted_usd"] / wasted["total_usd"])
    st.dataframe(wasted.sort_values("wasted_usd", ascending=False), hide_index=True,
                 width="stretch", column_config={
                     "key": st.column_config.TextColumn("country"), **CONFIG,
                     "removable_usd": st.column_config.NumberColumn(
                         "on numbers to remove", format="$%.4f"),
                     "share": st.column_config.ProgressColumn(
                         "share of spend", format="percent", min_value=0, max_value=1)})
