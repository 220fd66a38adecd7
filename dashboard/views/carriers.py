"""Carriers & countries: delivery rate and latency per carrier and country, worst first."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import labels
from dashboard.common import cached, empty_state, explore, page_context, selected_row

path, filters = page_context()
st.header("Carriers & countries")

CONFIG = {
    "messages": st.column_config.NumberColumn("Messages", format="%d"),
    "delivered": st.column_config.NumberColumn("Delivered", format="%d"),
    "failed": st.column_config.NumberColumn("Failed", format="%d"),
    "delivery_rate": st.column_config.ProgressColumn("Delivery rate", format="percent",
                                                     min_value=0, max_value=1),
    "median_latency_s": st.column_config.NumberColumn("Median latency", format="%.1f s"),
}


def table(dim: str, title: str) -> None:
    frame: pd.DataFrame = cached(path, "delivery_by", dim, filters)
    st.subheader(title)
    if frame.empty:
        empty_state("messages")
        return
    frame = frame.sort_values("delivery_rate", na_position="last").reset_index(drop=True)
    worst = frame["delivery_rate"].min()
    frame.insert(0, "flag", ["▼ worst" if r == worst and pd.notna(r) else ""
                             for r in frame["delivery_rate"]])
    keys = frame[dim].tolist()
    if dim == "country":
        frame[dim] = frame[dim].map(labels.country)
    event = st.dataframe(frame, hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key=f"{dim}_table",
                         column_config={"flag": st.column_config.TextColumn(""),
                                        dim: dim.capitalize(), **CONFIG})
    row = selected_row(event)
    if row is not None:
        explore(f"{dim}:{keys[row]}")


st.caption("Worst delivery rate first. Click a row for its newest messages.")
table("carrier", "By carrier")
table("country", "By country")
