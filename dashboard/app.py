"""smsledger's dashboard. Started by `smsledger dashboard --port P`."""

from __future__ import annotations

import streamlit as st

from dashboard import common

st.set_page_config(page_title="smsledger", page_icon=":material/sms:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("pages/errors.py", title="Errors", icon=":material/error:"),
    st.Page("pages/carriers.py", title="Carriers & countries", icon=":material/cell_tower:"),
    st.Page("pages/otp.py", title="OTP", icon=":material/timer:"),
    st.Page("pages/unreachable.py", title="Unreachable numbers", icon=":material/phonelink_erase:"),
    st.Page("pages/opt_outs.py", title="Opt-outs", icon=":material/block:"),
    st.Page("pages/explorer.py", title="Message explorer", icon=":material/search:"),
]

page = st.navigation(PAGES)
st.sidebar.title("smsledger")
path = common.snapshot()
st.session_state["filters"] = common.sidebar(path)
st.session_state["snapshot"] = path
page.run()
