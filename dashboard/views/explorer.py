"""Message explorer: a message SID (or its start), a phone number (with or without +, or just
its last digits as the masked pages show them), or a drill-down from another page → the whole
event timeline."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.queries import Search
from dashboard import labels
from dashboard.common import cached, mask, page_context, selected_row

path, _ = page_context()
st.header("Message explorer")
if "explore_request" in st.session_state:      # a click on another page brought us here
    st.session_state["explore"] = st.session_state.pop("explore_request")
text = st.text_input("Message SID, phone number, or a number's last 4 digits", key="explore",
                     placeholder="SM0123…, +1 415 555 0123, 4155550123 or 0123")
pinned = st.session_state.get("explore_pinned", "")
search = Search("number", pinned) if pinned and text == mask(pinned) else Search.parse(text)
if search.kind == "empty":
    st.caption("Every send, status callback, reply and opt-out is an immutable event; this "
               "shows them all for one message or one number. The other pages open it too: "
               "click a row in Unreachable numbers, Errors, Carriers & countries or Alerts.")
    st.stop()

key = ""
if search.kind in ("sid", "number"):
    key = search.value
elif search.kind == "digits":
    found: pd.DataFrame = cached(path, "find_numbers", search.value)
    if found.empty:
        st.warning(f"No number ending in {search.value} in this snapshot.")
        st.stop()
    phones = found["phone"].tolist()
    if len(phones) == 1:
        key = phones[0]
    else:
        st.caption(f"{len(phones)} numbers end in {search.value}" +
                   (" (the 50 most texted)" if len(phones) == 50 else "") + ": pick one.")
        key = st.selectbox("Number", phones, format_func=lambda p: (
            f"{mask(p)} — {labels.country(found.set_index('phone').at[p, 'country'])}, "
            f"{found.set_index('phone').at[p, 'sends']} sends"), key="explore_pick") or ""
else:
    what = {"sid_prefix": f"SIDs starting {search.value}",
            "error": f"error {search.value}", "carrier": f"carrier {search.value}",
            "country": f"country {labels.country(search.value)}",
            "sender": f"sender {search.value}"}[search.kind]
    messages: pd.DataFrame = cached(path, "find_messages", search)
    if messages.empty:
        st.warning(f"No messages with {what} in this snapshot.")
        st.stop()
    st.caption(f"The newest {len(messages)} messages with {what}: click one for its "
               "timeline.")
    shown = pd.DataFrame({
        "Message": messages["message_sid"], "Number": messages["phone"].map(mask),
        "Status": messages["status"].fillna(""),
        "Error": messages["error_code"].map(lambda c: "" if pd.isna(c) else str(int(c))),
        "Carrier": messages["carrier"].fillna(""),
        "Country": messages["country"].map(labels.country),
        "Sent": messages["sent_at"]})
    event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key="explore_messages",
                         column_config={"Sent": st.column_config.DatetimeColumn(
                             "Sent", format="YYYY-MM-DD HH:mm:ss")})
    row = selected_row(event)
    if row is None:
        st.stop()
    key = str(messages["message_sid"].iloc[row])

line: pd.DataFrame = cached(path, "timeline", key)
if line.empty:
    st.warning(f"No events for {mask(key) if key.startswith('+') else key} in this snapshot.")
    st.stop()
title = key if key.startswith(("SM", "MM")) else mask(key)
st.subheader(f"{title}: {len(line)} events")
st.caption("**When** is the event's own time (Twilio's, where it sent one: Event Streams, "
           "reconcile, backfill); **Stored** is when smsledger received it. Oldest first, in "
           "the order they were stored.")
one_number = not key.startswith(("SM", "MM"))
timeline = pd.DataFrame({
    "When": line["occurred_at"], "Stored": line["received_at"],
    "What": line["type"].map(lambda t: labels.label(labels.EVENT_TYPES, t)),
    "Status": line["status"].fillna(""),
    "Error": line["error_code"].map(lambda c: "" if pd.isna(c) else str(int(c))),
    "Source": line["source"].map(lambda s: labels.label(labels.SOURCES, s)),
    "Message": line["message_sid"].fillna(""),
    "Number": line["phone"].map(mask),
    "Detail": line["detail"].fillna("")})
# The column the search fixed says nothing new on every row: left out, so the rest fits.
timeline = timeline.drop(columns=["Number"] if one_number else ["Message"])
st.dataframe(timeline, hide_index=True, width="stretch", column_config={
    "When": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "Stored": st.column_config.DatetimeColumn("Stored (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "Detail": st.column_config.TextColumn("Detail", width="large")})
