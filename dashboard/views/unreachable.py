"""Unreachable numbers: every number the hygiene rules flag, with the evidence."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from dashboard import labels
from dashboard.common import (
    cached,
    explore,
    hygiene_csv,
    mask_frame,
    page_context,
    selected_row,
    settings,
)

SHOWN_ROWS = 5000


@st.cache_data(ttl=300, max_entries=20, show_spinner=False)
def prepared(path: str, country: str | None, show: bool, verdicts: tuple[str, ...],
             ) -> tuple[pd.DataFrame, pd.Series]:
    """The first SHOWN_ROWS flagged numbers, masked and labelled, and the numbers behind
    the rows, once per snapshot and choice (a list runs to hundreds of thousands: the page
    reads and shows the first ones only)."""
    frame = cached(path, "flagged_numbers", list(verdicts), country, SHOWN_ROWS)
    phones = frame["phone"]
    frame = mask_frame(frame)
    frame["verdict"] = frame["verdict"].map(lambda v: labels.label(labels.VERDICTS, v))
    frame["country"] = frame["country"].map(labels.country)
    return frame, phones



path, filters = page_context()
st.header("Unreachable numbers")
st.caption("Numbers to stop texting, by the list-hygiene rules: remove (does not exist, "
           "landline, invalid), unreachable (30003 again and again over days with no delivery "
           "in between), blocked, opted out.")
counts: dict[str, int] = cached(path, "flagged_counts", filters.country)
if not counts:
    st.success("No flagged numbers in this snapshot.")
    st.stop()
verdicts = sorted(counts)
picked = st.multiselect("Verdict", verdicts, default=verdicts, key="verdicts")
cols = st.columns(len(verdicts))
for col, verdict in zip(cols, verdicts, strict=True):
    col.metric(labels.label(labels.VERDICTS, verdict), counts[verdict])
shown, phones = prepared(path, filters.country, settings().show_numbers, tuple(picked))
total = sum(counts.get(v, 0) for v in picked)
if total > len(shown):
    st.caption(f"Showing the first {len(shown):,} of {total:,} (removals first, newest "
               "failures first); the CSV download has them all.")
st.caption("Click a row for the number's whole history.")
event = st.dataframe(shown, hide_index=True, width="stretch",
                     on_select="rerun", selection_mode="single-row", key="unreachable_table",
                     column_config={
    "phone": "Number", "verdict": "Verdict", "error_codes": "Codes",
    "sends": "Sends", "deliveries": "Delivered", "failures": "Failed",
    "consecutive_failures": "Failed in a row", "country": "Country", "carrier": "Carrier",
    "line_type": "Line type",
    "first_failure_at": st.column_config.DatetimeColumn("First failure",
                                                        format="YYYY-MM-DD HH:mm"),
    "last_failure_at": st.column_config.DatetimeColumn("Last failure",
                                                       format="YYYY-MM-DD HH:mm"),
    "last_delivered_at": st.column_config.DatetimeColumn("Last delivered",
                                                         format="YYYY-MM-DD HH:mm"),
    "action": st.column_config.TextColumn("Recommended action", width="large"),
    "reason": st.column_config.TextColumn("Reason", width="large")})
row = selected_row(event)
if row is not None:
    explore(str(phones.iloc[row]))
st.download_button("Download hygiene CSV",
                   partial(hygiene_csv, path, filters.country, tuple(picked)),
                   file_name="hygiene.csv", mime="text/csv")
if not settings().show_numbers:
    st.caption("Numbers are masked to their last 4 digits (set SMSLEDGER_SHOW_NUMBERS=1 to "
               "show them). The worker's full reports are under SMSLEDGER_DATA_DIR/reports.")
