"""smsledger's dashboard. Started by `smsledger dashboard --port P`."""

from __future__ import annotations

import streamlit as st

from dashboard import common

st.set_page_config(page_title="smsledger", page_icon=":material/sms:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("views/errors.py", title="Errors", icon=":material/error:"),
    st.Page("views/carriers.py", title="Carriers & countries", icon=":material/cell_tower:"),
    st.Page("views/otp.py", title="OTP", icon=":material/timer:"),
    st.Page("views/unreachable.py", title="Unreachable numbers", icon=":material/phonelink_erase:"),
    st.Page("views/opt_outs.py", title="Opt-outs", icon=":material/block:"),
    st.Page("views/cost.py", title="Cost", icon=":material/payments:"),
    st.Page("views/explorer.py", title="Message explorer", icon=":material/search:"),
]

page = st.navigation(PAGES)
st.sidebar.title("smsledger")
path = common.snapshot()
st.session_state["filters"] = common.sidebar(path)
st.session_state["snapshot"] = path
page.run()
