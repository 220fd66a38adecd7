"""Fraud: OTP conversion by country and number prefix, the prefixes the `pumping` rule flags
now (with the evidence behind each), and the sends the fraud guard refused."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import pumping
from analytics.queries import Filters
from dashboard.common import connection, empty_state, page_context, settings


@st.cache_data(ttl=300, max_entries=50, show_spinner=False)
def conversion(path: str, f: Filters) -> pd.DataFrame:
    return pumping.conversion_by_prefix(connection(path), f.start, f.end)


@st.cache_data(ttl=60, max_entries=20, show_spinner=False)
def flagged(path: str) -> pd.DataFrame:
    return pumping.flagged_now(connection(path), rules_path=settings().alert_rules)


@st.cache_data(ttl=300, max_entries=50, show_spinner=False)
def blocked(path: str, f: Filters) -> pd.DataFrame:
    return pumping.blocked_sends(connection(path), f.start, f.end)


path, filters = page_context()
st.header("Fraud: SMS pumping")
st.caption("An attacker makes your site send OTP codes to numbers it is paid for. Per number "
           "prefix (the number without its last 4 digits): conversion that collapses, prefixes "
           "never texted before, runs of consecutive numbers, and Twilio's own blocks (30450, "
           "30453, 60410) open a `pumping` alert. With SMSLEDGER_FRAUD_GUARD=1 the ingester "
           "refuses OTP sends and Verify starts to the prefix while it is open.")

st.subheader("Flagged now")
now = flagged(path)
if now.empty:
    st.success("No prefix looks pumped in the current window.")
else:
    st.error(f"{len(now)} prefix(es) look pumped right now.")
    st.dataframe(now, hide_index=True, width="stretch", column_config={
        "prefix": st.column_config.TextColumn("prefix (+ 4 digits)"),
        "conversion": st.column_config.ProgressColumn("conversion", format="percent",
                                                      min_value=0, max_value=1),
        "baseline": st.column_config.NumberColumn("usual", format="percent")})

st.subheader("Refused by the fraud guard")
refused = blocked(path, filters)
if refused.empty:
    st.info("No send was refused for pumping in this range.")
else:
    c1, c2 = st.columns(2)
    c1.metric("Sends refused", f"{int(refused['blocked'].sum()):,}")
    c2.metric("Prefixes", f"{refused['prefix'].nunique():,}")
    st.dataframe(refused, hide_index=True, width="stretch")

st.subheader("OTP conversion by country and prefix")
table = conversion(path, filters)
if table.empty:
    empty_state("OTP sends or Verify starts")
else:
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "verify_conversion": st.column_config.ProgressColumn(
            "Verify conversion", format="percent", min_value=0, max_value=1)})
