"""Unreachable numbers: every number the hygiene rules flag, with the evidence."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.common import cached, mask_frame, page_context, settings


@st.cache_data(ttl=300, max_entries=20, show_spinner=False)
def prepared(path: str, country: str | None, show: bool, verdicts: tuple[str, ...],
             ) -> tuple[pd.DataFrame, bytes]:
    """The masked table and its CSV, once per snapshot and choice (masking and CSV-writing
    tens of thousands of rows on every rerun was most of this page's time)."""
    frame = cached(path, "flagged_numbers", list(verdicts), country)
    frame = mask_frame(frame)
    return frame, frame.to_csv(index=False).encode()

SHOWN_ROWS = 5000

path, filters = page_context()
st.header("Unreachable numbers")
st.caption("Numbers to stop texting, by the list-hygiene rules: remove (does not exist, "
           "landline, invalid), unreachable (30003 again and again over days with no delivery "
           "in between), blocked, opted out.")
all_flagged: pd.DataFrame = cached(path, "flagged_numbers", None, filters.country)
if all_flagged.empty:
    st.success("No flagged numbers in this snapshot.")
    st.stop()
verdicts = sorted(all_flagged["verdict"].unique())
picked = st.multiselect("Verdict", verdicts, default=verdicts, key="verdicts")
counts = all_flagged["verdict"].value_counts()
cols = st.columns(len(verdicts))
for col, verdict in zip(cols, verdicts, strict=True):
    col.metric(verdict.replace("_", " ").capitalize(), int(counts.get(verdict, 0)))
shown, csv_bytes = prepared(path, filters.country, settings().show_numbers, tuple(picked))
if len(shown) > SHOWN_ROWS:
    st.caption(f"Showing the first {SHOWN_ROWS:,} of {len(shown):,} (removals first, newest "
               "failures first); the CSV download has them all.")
st.dataframe(shown.head(SHOWN_ROWS), hide_index=True, width="stretch", column_config={
    "phone": "Number", "verdict": "Verdict", "reason": "Reason", "error_codes": "Codes",
    "sends": "Sends", "deliveries": "Delivered", "failures": "Failed",
    "consecutive_failures": "Failed in a row", "country": "Country", "carrier": "Carrier",
    "line_type": "Line type",
    "first_failure_at": st.column_config.DatetimeColumn("First failure",
                                                        format="YYYY-MM-DD HH:mm"),
    "last_failure_at": st.column_config.DatetimeColumn("Last failure",
                                                       format="YYYY-MM-DD HH:mm"),
    "last_delivered_at": st.column_config.DatetimeColumn("Last delivered",
                                                         format="YYYY-MM-DD HH:mm"),
    "action": "Recommended action"})
st.download_button("Download hygiene CSV", csv_bytes,
                   file_name="hygiene.csv", mime="text/csv")
if not settings().show_numbers:
    st.caption("Numbers are masked to their last 4 digits (set SMSLEDGER_SHOW_NUMBERS=1 to "
               "show them). The worker's full reports are under SMSLEDGER_DATA_DIR/reports.")
