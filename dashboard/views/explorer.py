"""Message explorer: a message SID or a phone number → its whole event timeline."""

from __future__ import annotations

import streamlit as st

from dashboard.common import cached, mask_frame, page_context, settings

path, _ = page_context()
st.header("Message explorer")
key = st.text_input("Message SID" + (" or phone number (E.164)" if settings().show_numbers
                                     else ""), key="explore",
                    placeholder="SM0123…" + (" or +14155550123" if settings().show_numbers
                                             else "")).strip()
if key and not settings().show_numbers and not key.upper().startswith(("SM", "MM")):
    # Masking shows the last 4 digits of a number, never its history by its whole number:
    # whoever types one in would learn whether that person is texted, when, and what failed.
    st.warning("Numbers are masked (SMSLEDGER_SHOW_NUMBERS=0), so the explorer looks up "
               "message SIDs only; a number's history is shown where numbers are shown whole.")
elif key:
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
