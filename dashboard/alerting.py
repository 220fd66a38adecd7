"""The alerts for the dashboard: cached per snapshot, and the banner every page shows while
any alert is open."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import alert_views
from dashboard.common import connection

ALERTS_PAGE = "views/alerts.py"


@st.cache_data(ttl=300, max_entries=50, show_spinner=False)
def alerts(path: str) -> pd.DataFrame:
    """Every alert in the snapshot ``path`` (a new snapshot is a new path: never stale)."""
    return alert_views.alerts(connection(path))


def banner(path: str) -> None:
    """A red line at the top of every page while any alert is open."""
    frame = alerts(path)
    open_now = frame[frame["state"] == "open"]
    if open_now.empty:
        return
    first = open_now.iloc[0]
    more = f" (and {len(open_now) - 1} more)" if len(open_now) > 1 else ""
    st.error(f"**{len(open_now)} alert{'s' if len(open_now) > 1 else ''} open** — "
             f"{first['text']}{more}. See the Alerts page.", icon=":material/notifications:")
