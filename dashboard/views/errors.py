"""Errors: which codes, what they mean, whose problem they are, and where they hit."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import labels
from dashboard.common import cached, empty_state, explore, page_context, selected_row

TOP_CODES = 8   # the trend shows these; more lines than distinct colours is no chart

path, filters = page_context()
st.header("Error codes")
errors = cached(path, "error_breakdown", filters)
if errors.empty:
    empty_state("failed messages")
    st.stop()
shown = errors.assign(**{"class": errors["class"].map(
    lambda c: labels.label(labels.ERROR_CLASSES, c))})
st.caption("Click a code for the messages it hit.")
event = st.dataframe(
    shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
    key="errors_table",
    column_config={
        "error_code": st.column_config.NumberColumn("Code", format="%d"),
        "meaning": st.column_config.TextColumn("Meaning", width="large"),
        "class": "Whose problem",
        "messages": st.column_config.NumberColumn("Messages", format="%d"),
        "share": st.column_config.ProgressColumn("Share", format="percent", min_value=0,
                                                 max_value=1),
        "carriers": st.column_config.TextColumn("Carriers hit", width="medium"),
        "countries": st.column_config.TextColumn("Countries hit", width="medium")})
row = selected_row(event)
if row is not None:
    explore(f"error:{int(errors['error_code'].iloc[row])}")
st.caption("Permanent codes are the number's problem (the hygiene report removes it); codes "
           "marked *Yours* are the sender's (content, registration, capacity, account) and "
           "never count against a number.")
st.subheader(f"Trend of the top {TOP_CODES} codes, by day")
trend = cached(path, "error_trend", filters, "day")
top = errors.nlargest(TOP_CODES, "messages")["error_code"].tolist()
trend = trend[trend["error_code"].isin(top)]
st.altair_chart(alt.Chart(trend).mark_line(point=True).encode(
    x=alt.X("period:T", title=None, axis=alt.Axis(format="%Y-%m-%d")),
    y=alt.Y("messages:Q", title="Messages"),
    color=alt.Color("error_code:N", title="Code", scale=alt.Scale(scheme="tableau10")),
    tooltip=[alt.Tooltip("period:T", title="Day", format="%Y-%m-%d"),
             alt.Tooltip("error_code:N", title="Code"), alt.Tooltip("messages:Q")]),
    width="stretch")
