"""Alerts: the open ones and the recent ones, each with its segment's rate against the
baseline it was judged by."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from analytics import alert_views
from dashboard.alerting import alerts
from dashboard.common import connection, explore, page_context, selected_row

path, _filters = page_context()
st.header("Alerts")
frame = alerts(path)
if frame.empty:
    st.info("No alerts so far. The worker evaluates the alert rules after every rollup "
            "(analytics/alert_rules.toml); `smsledger alerts check` does it once.")
    st.stop()
open_now = frame[frame["state"] == "open"]
c1, c2 = st.columns(2)
c1.metric("Open", len(open_now))
c2.metric("Resolved", int((frame["state"] == "resolved").sum()))

shown = ["state", "rule", "segment", "opened_at", "resolved_at", "observed", "baseline",
         "sample", "text"]
st.subheader("Open")
if open_now.empty:
    st.success("Nothing open.")
else:
    st.dataframe(open_now[shown], hide_index=True, width="stretch")
st.subheader("Recent")
st.caption("Click an alert for the newest messages of its segment in the Message explorer.")
recent = frame.head(50).reset_index(drop=True)
event = st.dataframe(recent[shown], hide_index=True, width="stretch", on_select="rerun",
                     selection_mode="single-row", key="alerts_table",
                     column_config={"text": st.column_config.TextColumn("What", width="large")})
clicked = selected_row(event)
if clicked is not None:
    hit = recent.iloc[clicked]
    for dim in ("carrier", "country", "sender"):
        if isinstance(hit[dim], str) and hit[dim]:
            explore(f"{dim}:{hit[dim]}")

st.subheader("Segment against its baseline")
labels = [f"{r.state} · {r.rule} · {r.segment} · {r.opened_at:%Y-%m-%d %H:%M}"
          for r in frame.itertuples()]
picked = st.selectbox("Alert", range(len(frame)), format_func=lambda i: labels[i])
row = frame.iloc[picked if picked is not None else 0]
resolved = None if pd.isna(row["resolved_at"]) else row["resolved_at"].to_pydatetime()
series = alert_views.segment_series(connection(path), row["carrier"], row["country"],
                                    row["sender"], row["opened_at"].to_pydatetime(), resolved)
st.caption(row["text"])
if series.empty:
    st.info("No messages for this segment around the alert.")
else:
    otp = row["rule"] == "otp_latency"
    column, title = (("otp_p50_s", "OTP median (s)") if otp
                     else ("delivery_rate", "delivery rate"))
    line = alt.Chart(series).mark_line(point=True).encode(
        x=alt.X("bucket:T", title=None), y=alt.Y(f"{column}:Q", title=title))
    layers = [line]
    reference = 8.0 if otp else row["baseline"]
    if reference is not None and not pd.isna(reference):
        layers.append(alt.Chart(pd.DataFrame({"y": [float(reference)]})).mark_rule(
            strokeDash=[4, 4], color="red").encode(y="y:Q"))
    st.altair_chart(alt.layer(*layers), width="stretch")
