"""Message explorer: a message SID or a phone number → its whole event timeline."""

from __future__ import annotations

import streamlit as st

from dashboard.common import cached, mask_frame, page_context

path, _ = page_context()
st.header("Message explorer")
key = st.text_input("Message SID or phone number (E.164)", key="explore",
                    placeholder="SM0123… or +14155550123").strip()
if key:
    line = cached(path, "timeline", key)
    if line.empty:
        st.warning(f"No events for {key!r} in this snapshot.")
    else:
        st.caption(f"{len(line)} events, in the order they were stored")
        st.dataframe(mask_frame(line), hide_index=True, width="stretch",
                     column_config={"received_at": st.column_config.DatetimeColumn(
                         "Received", format="YYYY-MM-DD HH:mm:ss")})
else:
    st.caption("Every send, status callback, reply and opt-out is an immutable event; this "
               "shows them all for one message or one number.")
