"""Opt-outs: STOP and START over time, help requests apart, and the keywords people used."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import labels
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
daily["kind"] = daily["kind"].map(lambda k: labels.label(labels.CONTACT_KINDS, k))
consent = daily[daily["kind"].isin(["Opted out", "Opted back in"])]
st.subheader("Opt-outs and opt-ins by day")
st.altair_chart(alt.Chart(consent).mark_bar().encode(
    x=alt.X("day:T", title=None, axis=alt.Axis(format="%Y-%m-%d")),
    y=alt.Y("events:Q", title="People"),
    color=alt.Color("kind:N", title=None, scale=alt.Scale(
        domain=["Opted out", "Opted back in"], range=["#c62828", "#2e7d32"])),
    xOffset="kind:N"), width="stretch")
helps = daily[daily["kind"] == "Asked for help"]
if not helps.empty:
    st.subheader("Help requests by day")
    st.altair_chart(alt.Chart(helps).mark_bar(color="#1565c0").encode(
        x=alt.X("day:T", title=None, axis=alt.Axis(format="%Y-%m-%d")),
        y=alt.Y("events:Q", title="Requests")), width="stretch")
st.subheader("Keywords used")
keywords = (frame.groupby(["kind", "keyword"], as_index=False)["events"].sum()
            .sort_values("events", ascending=False))
keywords["kind"] = keywords["kind"].map(lambda k: labels.label(labels.CONTACT_KINDS, k))
st.dataframe(keywords, hide_index=True, width="stretch", column_config={
    "kind": "What", "keyword": "Keyword", "events": "Times"})
