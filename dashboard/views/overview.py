"""Overview: volume, delivery rate against its own recent baseline, failures, OTP speed, sends
refused before they became messages, and the status funnel."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from analytics import queries
from dashboard import labels
from dashboard.common import cached, empty_state, page_context

BASELINE_DAYS = 7

path, filters = page_context()
st.header("Delivery health")
o = cached(path, "overview", filters)
if not o["sends"]:
    empty_state("messages")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
c1.metric("Sends", f"{o['sends']:,}")
c2.metric("Delivery rate", labels.percent(o["delivery_rate"]),
          help="Delivered ÷ (delivered + failed); messages still in flight are not counted")
c3.metric("Failures", f"{o['failed']:,}")
c4.metric("Median OTP latency", labels.duration(o["otp_median_s"]),
          help="Send → delivered callback, OTP messages; users give up near 10 s")

daily: pd.DataFrame = cached(path, "delivery_by", "day", filters)
st.subheader("Delivery rate by day, against the previous week")
finished = daily["delivered"] + daily["failed"]
rows = []
for i, day in enumerate(daily["day"]):
    window = daily[(daily["day"] < day) & (daily["day"] >= day - pd.Timedelta(days=BASELINE_DAYS))]
    base_n = float((window["delivered"] + window["failed"]).sum())
    base = float(window["delivered"].sum()) / base_n if base_n else None
    low, high = (labels.wilson(base * finished.iloc[i], finished.iloc[i])
                 if base is not None and finished.iloc[i] else (None, None))
    rows.append({"day": day, "rate": daily["delivery_rate"].iloc[i], "baseline": base,
                 "low": low, "high": high, "finished": int(finished.iloc[i])})
trend = pd.DataFrame(rows)
day_axis = alt.X("yearmonthdate(day):O", title=None, axis=alt.Axis(format="%Y-%m-%d",
                                                                    labelAngle=0))
base_chart = alt.Chart(trend).encode(x=day_axis)
# The expected range of each day on its own (a box per day): days differ in volume, so the
# range differs too, and joining them into one area would draw ranges between days.
band = base_chart.mark_bar(opacity=0.25, color="#1565c0", size=18).encode(
    y=alt.Y("low:Q", title="Delivery rate", axis=alt.Axis(format="%"),
            scale=alt.Scale(domain=[0, 1])), y2="high:Q")
line = base_chart.mark_line(point=True, color="#2e7d32").encode(
    y="rate:Q", tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"),
                         alt.Tooltip("rate:Q", title="delivery rate", format=".1%"),
                         alt.Tooltip("baseline:Q", title=f"previous {BASELINE_DAYS} days",
                                     format=".1%"),
                         alt.Tooltip("finished:Q", title="delivered + failed")])
layers = band + line
marks: pd.DataFrame = cached(path, "alert_marks", filters)
if not marks.empty:
    layers += alt.Chart(marks).mark_rule(strokeDash=[4, 3]).encode(
        x=alt.X("yearmonthdate(at):O"), color=alt.Color("what:N", title=None, scale=alt.Scale(
            domain=["alert opened", "alert resolved"], range=["#c62828", "#2e7d32"])),
        tooltip=[alt.Tooltip("at:T", format="%Y-%m-%d %H:%M"), "what:N"])
st.altair_chart(layers, width="stretch")
st.caption(f"Each day's box is where its rate would fall, given its volume, if delivery were "
           f"as good as in the {BASELINE_DAYS} days before (95 % Wilson interval). Dashed "
           "lines: alerts opening and resolving.")

st.subheader("Messages by day")
long = daily[["day", "delivered", "failed"]].melt(id_vars=["day"], var_name="outcome",
                                                  value_name="messages")
st.altair_chart(alt.Chart(long).mark_bar().encode(
    x=day_axis,
    y=alt.Y("messages:Q", stack=True, title="Messages"),
    color=alt.Color("outcome:N", title=None, scale=alt.Scale(
        domain=["delivered", "failed"], range=["#2e7d32", "#c62828"]))), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Status funnel")
    funnel = queries.funnel(o)
    first = int(funnel["count"].iloc[0]) if len(funnel) else 0
    funnel = funnel.assign(share=funnel["count"] / first if first else 0.0)
    funnel["label"] = [f"{int(c):,} ({labels.percent(s)})"
                       for c, s in zip(funnel["count"], funnel["share"], strict=True)]
    bars = alt.Chart(funnel).encode(y=alt.Y("stage:N", sort=None, title=None),
                                    x=alt.X("count:Q", title="Messages"))
    st.altair_chart(bars.mark_bar() + bars.mark_text(align="left", dx=4).encode(text="label"),
                    width="stretch")
with right:
    st.subheader("Refused before sending")
    refused: pd.DataFrame = cached(path, "refused_sends", filters)
    if refused.empty:
        st.caption("No send was refused in this range.")
    else:
        st.metric("Refused sends", f"{int(refused['sends'].sum()):,}",
                  help="Opted out or suppressed numbers refused by smsledger before Twilio "
                       "was called, and sends Twilio refused at create time (its code).")
        st.dataframe(refused.assign(reason=refused["reason"].map(
            lambda r: labels.label(labels.REFUSALS, r))), hide_index=True, width="stretch",
            column_config={"by": "Refused by", "reason": "Why", "sends": "Sends"})
