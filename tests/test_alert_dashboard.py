"""The Alerts page and the banner, through Streamlit's AppTest, on a snapshot the real rollup
built from a planted outage and the alert events the real engine appended."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics.alerts import AlertEngine
from analytics.detectors import shipped
from tests.factory import append, publish
from tests.test_alert_notify import outage
from tests.test_alerts import only, rolled_up

APP = "../dashboard/app.py"


async def test_alerts_page_and_banner(db_url: str, db: asyncpg.Connection, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    await append(db, outage(now))
    work = publish(db_url, tmp_path)
    duck = await rolled_up(db_url, db, work)
    opened = await AlertEngine(only("delivery_rate_drop"), shipped()).evaluate(duck, db, now)
    assert opened
    duck.close()
    duck = await rolled_up(db_url, db, work)      # the alert events reach the model too
    duck.close()

    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception, at.exception
        banner = at.error[0].value
        assert f"{len(opened)} alerts open" in banner and "Delivery rate" in banner
        at.switch_page("views/alerts.py").run()
        assert not at.exception, at.exception
        shown = {m.label: m.value for m in at.metric}
        assert shown["Open"] == str(len(opened))
        assert "delivery_rate_drop" in at.dataframe[0].value["rule"].tolist()
        assert len(at.get("vega_lite_chart")) == 1, [i.value for i in at.info]
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_no_alerts_no_banner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             db_url: str) -> None:
    from analytics.model import open_model
    from tests.factory import lake_at

    con = open_model(lake_at(db_url, publish(db_url, tmp_path)))
    con.close()
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception and not at.error
        at.switch_page("views/alerts.py").run()
        assert not at.exception
        assert "No alerts so far" in at.info[0].value
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()
