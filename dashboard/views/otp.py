"""OTP: how fast codes arrive (p50/p90/p99 against the 8 s line) and Verify conversion."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from analytics.queries import OTP_SLOW_MEDIAN_S
from dashboard import labels
from dashboard.common import cached, empty_state, page_context

# Below this many delivered OTPs a p99 is one or two messages' latency, not a percentile.
P99_MIN_SAMPLE = 100


def hide_thin_p99(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(p99_s=frame["p99_s"].where(frame["delivered"] >= P99_MIN_SAMPLE))

path, filters = page_context()
st.header("OTP latency")
# The whole, by carrier, by country and by hour: one pass over the messages.
by: dict[str, pd.DataFrame] = cached(path, "otp_latency_page", filters)
overall = by["scope"]
if overall.empty:
    empty_state("delivered OTP messages")
else:
    row = overall.iloc[0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("p50", labels.duration(row["p50_s"]))
    c2.metric("p90", labels.duration(row["p90_s"]))
    c3.metric("p99", labels.duration(row["p99_s"]) if row["delivered"] >= P99_MIN_SAMPLE
              else "–", help=f"Shown from {P99_MIN_SAMPLE} delivered OTPs on")
    c4.metric("Delivered OTPs", f"{int(row['delivered']):,}")
    if row["slow"]:
        st.error(f"The median passes {OTP_SLOW_MEDIAN_S:g} s: users type before the code "
                 "arrives.")
    latencies = cached(path, "otp_latencies", filters)
    hist = alt.Chart(latencies).mark_bar().encode(
        x=alt.X("latency_s:Q", bin=alt.Bin(maxbins=60), title="seconds, send → delivered"),
        y=alt.Y("count():Q", title="messages"))
    limit = alt.Chart(pd.DataFrame({"x": [OTP_SLOW_MEDIAN_S],
                                    "text": [f"{OTP_SLOW_MEDIAN_S:g} s: users give up"]}))
    line = limit.mark_rule(color="#c62828", strokeDash=[4, 4]).encode(x="x:Q")
    text = limit.mark_text(align="left", dx=4, dy=-6, color="#c62828", baseline="top").encode(
        x="x:Q", y=alt.value(0), text="text:N")
    st.altair_chart(hist + line + text, width="stretch")
    config = {f"p{p}_s": st.column_config.NumberColumn(f"p{p}", format="%.1f s")
              for p in (50, 90, 99)}
    config["slow"] = st.column_config.CheckboxColumn(f"median > {OTP_SLOW_MEDIAN_S:g} s")
    config["delivered"] = st.column_config.NumberColumn("Delivered OTPs", format="%d")
    for dim, title in (("carrier", "By carrier"), ("country", "By country")):
        st.subheader(title)
        frame = hide_thin_p99(by[dim])
        if dim == "country":
            frame["country"] = frame["country"].map(labels.country)
        st.dataframe(frame, hide_index=True, width="stretch",
                     column_config={dim: dim.capitalize(), **config})
    st.caption(f"p99 is shown from {P99_MIN_SAMPLE} delivered OTPs on.")
    st.subheader("By hour of day (UTC)")
    hours = by["hour"]
    long = hours.melt(id_vars=["hour"], value_vars=["p50_s", "p90_s"], var_name="percentile",
                      value_name="seconds")
    long["percentile"] = long["percentile"].str.replace("_s", "")
    by_hour = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("hour:O", title="Hour of day (UTC)"), y=alt.Y("seconds:Q", title="Seconds"),
        color=alt.Color("percentile:N", title=None))
    slow = limit.mark_rule(color="#c62828", strokeDash=[4, 4]).encode(y="x:Q")
    st.altair_chart(by_hour + slow, width="stretch")

st.header("Verify conversion")
verify: pd.DataFrame = cached(path, "verify_conversion", filters)
if verify.empty:
    empty_state("Verify checks")
else:
    started, approved = int(verify["started"].sum()), int(verify["approved"].sum())
    c1, c2, c3 = st.columns(3)
    c1.metric("Verifications started", f"{started:,}")
    c2.metric("Approved", f"{approved:,}")
    c3.metric("Conversion", labels.percent(approved / started) if started else "–")
    st.dataframe(verify, hide_index=True, width="stretch", column_config={
        "conversion": st.column_config.ProgressColumn("Conversion", format="percent",
                                                      min_value=0, max_value=1)})
