"""Opt-outs: STOP and START over time, and the keywords people used."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.common import cached, empty_state, page_context

path, filters = page_context()
st.header("Opt-outs")
frame: pd.DataFrame = cached(path, "opt_outs", filters)
if frame.empty:
    empty_state("opt-outs or opt-ins")
    st.stop()
totals = frame.groupby("kind")["events"].sum()
c1, c2, c3 = st.columns(3)
c1.metric("Opt-outs", int(totals.get("opted_out", 0)))
c2.metric("Opt-ins", int(totals.get("opted_in", 0)))
c3.metric("Help requests", int(totals.get("help_requested", 0)))
daily = frame.groupby(["day", "kind"], as_index=False)["events"].sum()
st.altair_chart(alt.Chart(daily).mark_bar().encode(
    x=alt.X("day:T", title=None), y="events:Q", color="kind:N"), width="stretch")
st.subheader("Keywords used")
st.dataframe(frame.groupby(["kind", "keyword"], as_index=False)["events"].sum()
             .sort_values("events", ascending=False), hide_index=True,
             width="stretch")
