"""Errors: which codes, what they mean, whose problem they are, and where they hit."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard.common import cached, empty_state, page_context

path, filters = page_context()
st.header("Error codes")
errors = cached(path, "error_breakdown", filters)
if errors.empty:
    empty_state("failed messages")
    st.stop()
st.dataframe(
    errors, hide_index=True, width="stretch",
    column_config={
        "error_code": st.column_config.NumberColumn("Code", format="%d"),
        "meaning": "Meaning", "class": "Class",
        "messages": st.column_config.NumberColumn("Messages", format="%d"),
        "share": st.column_config.ProgressColumn("Share", format="percent", min_value=0,
                                                 max_value=1),
        "carriers": "Carriers hit", "countries": "Countries hit"})
st.caption("Class: permanent and unreachable codes are the number's problem; sender_* and "
           "filtering codes are yours (content, registration, capacity).")
st.subheader("Trend")
trend = cached(path, "error_trend", filters, "day")
st.altair_chart(alt.Chart(trend).mark_line(point=True).encode(
    x=alt.X("period:T", title=None), y="messages:Q", color=alt.Color("error_code:N",
                                                                     title="code")),
    width="stretch")
