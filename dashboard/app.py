"""smsledger's dashboard. Started by `smsledger dashboard --port P`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import alerting, common
from dashboard.auth import gate

# A favicon of our own: Streamlit fetches a ":material/…:" page icon from Google's servers,
# and nothing on this dashboard may leave the machine.
st.set_page_config(page_title="smsledger",
                   page_icon=str(Path(__file__).with_name("favicon.png")), layout="wide")
gate()   # who may see anything below: dashboard/auth.py

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("views/errors.py", title="Errors", icon=":material/error:"),
    st.Page("views/carriers.py", title="Carriers & countries", icon=":material/cell_tower:"),
    st.Page("views/otp.py", title="OTP", icon=":material/timer:"),
    st.Page("views/unreachable.py", title="Unreachable numbers", icon=":material/phonelink_erase:"),
    st.Page("views/opt_outs.py", title="Opt-outs", icon=":material/block:"),
    st.Page("views/cost.py", title="Cost", icon=":material/payments:"),
    st.Page("views/fraud.py", title="Fraud", icon=":material/gpp_maybe:"),
    st.Page("views/explorer.py", title="Message explorer", icon=":material/search:"),
    st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
]

page = st.navigation(PAGES)
st.sidebar.title("smsledger")
path = common.snapshot()
st.session_state["filters"] = common.sidebar(path)
st.session_state["snapshot"] = path
alerting.banner(path)
page.run()
