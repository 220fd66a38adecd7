"""OTP: how fast codes arrive (p50/p90/p99 against the 8 s line) and Verify conversion."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from analytics.queries import OTP_SLOW_MEDIAN_S
from dashboard.common import cached, empty_state, page_context

path, filters = page_context()
st.header("OTP latency")
overall: pd.DataFrame = cached(path, "otp_latency", None, filters)
if overall.empty:
    empty_state("delivered OTP messages")
else:
    row = overall.iloc[0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("p50", f"{row['p50_s']:.1f} s")
    c2.metric("p90", f"{row['p90_s']:.1f} s")
    c3.metric("p99", f"{row['p99_s']:.1f} s")
    c4.metric("Delivered OTPs", f"{int(row['delivered']):,}")
    if row["slow"]:
        st.error(f"The median passes {OTP_SLOW_MEDIAN_S:g} s: users type before the code "
                 "arrives.")
    latencies = cached(path, "otp_latencies", filters)
    hist = alt.Chart(latencies).mark_bar().encode(
        x=alt.X("latency_s:Q", bin=alt.Bin(maxbins=60), title="seconds, send → delivered"),
        y=alt.Y("count():Q", title="messages"))
    line = alt.Chart(pd.DataFrame({"x": [OTP_SLOW_MEDIAN_S]})).mark_rule(
        color="#c62828", strokeDash=[4, 4]).encode(x="x:Q")
    st.altair_chart(hist + line, width="stretch")
    config = {f"p{p}_s": st.column_config.NumberColumn(f"p{p}", format="%.1f s")
              for p in (50, 90, 99)}
    config["slow"] = st.column_config.CheckboxColumn(f"median > {OTP_SLOW_MEDIAN_S:g} s")
    for dim, title in (("carrier", "By carrier"), ("country", "By country"),
                       ("hour", "By hour of day (UTC)")):
        st.subheader(title)
        st.dataframe(cached(path, "otp_latency", dim, filters), hide_index=True,
                     width="stretch", column_config=config)

st.header("Verify conversion")
verify: pd.DataFrame = cached(path, "verify_conversion", filters)
if verify.empty:
    empty_state("Verify checks")
else:
    started, approved = int(verify["started"].sum()), int(verify["approved"].sum())
    c1, c2, c3 = st.columns(3)
    c1.metric("Verifications started", f"{started:,}")
    c2.metric("Approved", f"{approved:,}")
    c3.metric("Conversion", f"{approved / started:.1%}" if started else "—")
    st.dataframe(verify, hide_index=True, width="stretch", column_config={
        "conversion": st.column_config.ProgressColumn("Conversion", format="percent",
                                                      min_value=0, max_value=1)})
