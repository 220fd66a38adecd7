"""What every dashboard page shares: the settings, the newest snapshot, the sidebar filters,
phone masking, and cached queries.

The dashboard reads the model read-only (``analytics.snapshot.open_snapshot``: the lake the
worker writes, attached read-only; PostgreSQL only as the lake's catalog, never the event
store's tables). Every worker commit is a new catalog snapshot; a small fragment polls its
number and reruns the app when it changes, so the pages refresh on their own. Cached results
are keyed by that "version" string, so nothing stale is served after a commit.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import duckdb
import pandas as pd
import streamlit as st

from analytics import lake as lakes
from analytics import queries
from analytics.queries import Filters
from analytics.snapshot import (
    CatalogUnreachable,
    SnapshotMissing,
    current_version,
    open_snapshot,
    use_model,
)
from schema.settings import Settings

REFRESH_S = 10


@st.cache_resource
def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(max_entries=3)
def _connect(lake: str) -> duckdb.DuckDBPyConnection:
    """One read-only connection per lake (a rebuild switches to a new one)."""
    return open_snapshot(settings().data_dir, settings().database_url)


def _version() -> str:
    """``<lake>@<catalog snapshot>``: what the pages read now."""
    pointer = lakes.read_pointer(settings().data_dir, settings().database_url)
    try:
        return f"{pointer.schema}@{current_version(_connect(pointer.schema).cursor())}"
    except duckdb.Error:
        # A connection the catalog's restart broke: open a new one next time.
        _connect.clear()
        raise CatalogUnreachable(
            "the analytics catalog database stopped answering; retrying") from None


def snapshot() -> str:
    """The model version to read now; stops the page with a clear message if there is none or
    the catalog database is unreachable (no stack trace: the worker retries on its own)."""
    try:
        return _version()
    except SnapshotMissing as exc:
        st.warning("No analytics yet. " + str(exc).replace("`", "**"))
        st.stop()
        raise   # st.stop() ends the script; this line only tells the type checker
    except CatalogUnreachable as exc:
        st.error("Analytics are unavailable: the catalog database (PostgreSQL) cannot be "
                 f"reached. {exc}. This page retries every {REFRESH_S} s.")
        _watch("")
        st.stop()
        raise


def connection(version: str) -> duckdb.DuckDBPyConnection:
    # A cursor per use: connections are shared between sessions (threads) via the cache.
    return use_model(_connect(version.split("@")[0]).cursor())


@st.fragment(run_every=REFRESH_S)
def _watch(shown: str) -> None:
    try:
        now = _version()
    except (SnapshotMissing, CatalogUnreachable):
        return
    if now != shown:
        st.rerun(scope="app")


def mask_frame(frame: pd.DataFrame, column: str = "phone") -> pd.DataFrame:
    """``mask`` for a whole column at once (vectorised: tables run to tens of thousands)."""
    if column in frame and not settings().show_numbers:
        frame = frame.copy()
        values = frame[column].astype("string")
        long = values.str.len() > 4
        frame[column] = values.where(~long, "•••" + values.str[-4:])
    return frame


def hygiene_csv(path: str, country: str | None, verdicts: tuple[str, ...]) -> bytes:
    """Every flagged number of the verdicts chosen, masked as the pages show them (the
    Unreachable page's download: made when it is clicked, not on every run of the page)."""
    frame = mask_frame(queries.flagged_numbers(connection(path), list(verdicts), country))
    return str(frame.to_csv(index=False)).encode()


def sidebar(path: str) -> Filters:
    """Data-as-of, and the filters every page applies."""
    con = connection(path)
    as_of = queries.data_as_of(con)
    st.sidebar.caption(f"Data as of **{as_of:%Y-%m-%d %H:%M:%S} UTC**" if as_of else
                       "No rollup yet")
    choices = cached(path, "filter_choices")
    today = datetime.now(UTC).date()
    picked = st.sidebar.date_input("Date range (UTC)", value=(today - timedelta(days=30),
                                                                today), key="range")
    start = end = None
    if isinstance(picked, tuple) and len(picked) == 2:
        start = datetime.combine(picked[0], time(), UTC)
        end = datetime.combine(picked[1] + timedelta(days=1), time(), UTC)
    elif isinstance(picked, date):
        start = datetime.combine(picked, time(), UTC)

    def pick(label: str, options: list[str], key: str) -> str | None:
        value = st.sidebar.selectbox(label, ["All", *options], key=key)
        return None if value == "All" else str(value)

    filters = Filters(start=start, end=end,
                      sender=pick("Sender", choices["sender"], "sender"),
                      category=pick("Category", choices["category"], "category"),
                      country=pick("Country", choices["country"], "country"))
    _watch(path)
    return filters


@st.cache_data(ttl=300, max_entries=500, show_spinner=False)
def cached(path: str, name: str, *args: Any) -> Any:
    """``analytics.queries.<name>(connection, *args)``, cached per model version: each commit
    is a new version, so nothing stale is ever served."""
    return getattr(queries, name)(connection(path), *args)


def page_context() -> tuple[str, Filters]:
    """The snapshot and filters the app set for this run."""
    return st.session_state["snapshot"], st.session_state["filters"]


def empty_state(what: str) -> None:
    st.info(f"No {what} in this range yet. Data appears here after the ingester has "
            "received events and the worker has rolled them up (every few seconds in the "
            "demo).")



EXPLORER = "views/explorer.py"


def mask(phone: object) -> str:
    """One number as the pages show it: whole with SMSLEDGER_SHOW_NUMBERS=1, else •••1234."""
    if not isinstance(phone, str) or not phone:     # pandas hands a missing one as NaN
        return ""
    return phone if settings().show_numbers or len(phone) <= 4 else "•••" + phone[-4:]


def explore(key: str) -> None:
    """Open the Message explorer on ``key`` (a SID, a number, ``error:30003``, ...). The key
    travels in its own session entry: the explorer's text box is a widget of another page,
    whose state Streamlit drops while that page is not shown."""
    if key.startswith("+") and not settings().show_numbers:
        # The text box shows what a person may see: the masked number. The whole one rides
        # along out of sight, for the explorer to use while the box still shows its mask.
        st.session_state["explore_pinned"] = key
        key = mask(key)
    st.session_state["explore_request"] = key
    st.switch_page(EXPLORER)


def selected_row(event: Any) -> int | None:
    """The row a person clicked in a ``st.dataframe(on_select="rerun")``, if any."""
    rows = event.selection.rows if event is not None else []
    return int(rows[0]) if rows else None
