"""Overview: volume, delivery rate, failures, OTP speed, the trend and the status funnel."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.common import cached, empty_state, page_context

path, filters = page_context()
st.header("Delivery health")
o = cached(path, "overview", filters)
if not o["sends"]:
    empty_state("messages")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
c1.metric("Sends", f"{o['sends']:,}")
c2.metric("Delivery rate",
          f"{o['delivery_rate']:.1%}" if o["delivery_rate"] is not None else "—",
          help="Delivered ÷ (delivered + failed); messages still in flight are not counted")
c3.metric("Failures", f"{o['failed']:,}")
c4.metric("Median OTP latency",
          f"{o['otp_median_s']:.1f} s" if o["otp_median_s"] is not None else "—",
          help="Send → delivered callback, OTP messages; users give up near 10 s")

span = (filters.end - filters.start) if filters.start and filters.end else None
period = "hourly" if span is not None and span.days <= 2 else "day"
trend: pd.DataFrame = cached(path, "delivery_by", period, filters)
long = trend[[period, "delivered", "failed"]].melt(id_vars=[period], var_name="outcome",
                                                   value_name="messages")
st.subheader(f"Messages by {'hour' if period == 'hourly' else 'day'}")
st.altair_chart(alt.Chart(long).mark_bar().encode(
    x=(alt.X("yearmonthdate(day):O", title=None) if period == "day"
       else alt.X("hourly:T", title=None)),
    y=alt.Y("messages:Q", stack=True), color=alt.Color("outcome:N", scale=alt.Scale(
        domain=["delivered", "failed"], range=["#2e7d32", "#c62828"]))),
    width="stretch")

st.subheader("Status funnel")
funnel = cached(path, "status_funnel", filters)
st.altair_chart(alt.Chart(funnel).mark_bar().encode(
    y=alt.Y("stage:N", sort=None, title=None), x=alt.X("count:Q", title="messages")),
    width="stretch")
