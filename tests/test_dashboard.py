"""Every dashboard page through Streamlit's AppTest, against a snapshot built by the real
rollup from simulated traffic; the figures shown are checked against SQL of our own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics.snapshot import open_snapshot
from tests import snapshot_data

APP = "../dashboard/app.py"


@pytest.fixture
def app(snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(snapshot_dir))
    monkeypatch.delenv("SMSLEDGER_SHOW_NUMBERS", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    yield at
    st.cache_data.clear()
    st.cache_resource.clear()


def sql(data_dir: Path, query: str, *params: Any) -> Any:
    con = open_snapshot(data_dir)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_overview_shows_the_true_figures(app: AppTest, snapshot_dir: Path) -> None:
    [(sends, delivered, failed)] = sql(snapshot_dir, """
        SELECT count(*), count(*) FILTER (WHERE status IN ('delivered', 'read')),
               count(*) FILTER (WHERE status IN ('undelivered', 'failed')) FROM messages""")
    [(otp_median,)] = sql(snapshot_dir, """
        SELECT median(epoch(delivered_at - sent_at)) FROM messages WHERE category = 'otp'""")
    shown = metrics(app)
    assert sends > 100
    assert shown["Sends"] == f"{sends:,}"
    assert shown["Failures"] == f"{failed:,}"
    assert shown["Delivery rate"] == f"{delivered / (delivered + failed):.1%}"
    assert shown["Median OTP latency"] == f"{otp_median:.1f} s"
    assert "Data as of" in app.sidebar.caption[0].value
    assert len(app.get("vega_lite_chart")) == 2


def test_errors_page_lists_every_code_with_its_class(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "errors")
    table = app.dataframe[0].value
    expected = dict(sql(snapshot_dir, "SELECT error_code, count(*) FROM messages "
                                      "WHERE error_code IS NOT NULL GROUP BY 1"))
    assert dict(zip(table["error_code"], table["messages"], strict=True)) == expected
    classes = dict(zip(table["error_code"], table["class"], strict=True))
    if 30005 in classes:
        assert classes[30005] == "Number: permanent (stop texting it)"
    if 30007 in classes:
        assert classes[30007] == "Yours: content filtered"


def test_carriers_page_flags_the_worst(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "carriers")
    by_carrier = app.dataframe[0].value
    carriers = {r[0] or "unknown" for r in sql(snapshot_dir, "SELECT carrier FROM message_facts")}
    assert set(by_carrier["carrier"]) == carriers
    worst = by_carrier["delivery_rate"].min()
    assert by_carrier.iloc[0]["flag"] == "▼ worst"
    assert by_carrier.iloc[0]["delivery_rate"] == worst
    assert set(app.dataframe[1].value["country"]) >= {"United States (US)",
                                                      "United Kingdom (GB)"}


def test_otp_page_percentiles_and_verify(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "otp")
    [(p50, p90, p99, n)] = sql(snapshot_dir, """
        SELECT quantile_cont(l, 0.5), quantile_cont(l, 0.9), quantile_cont(l, 0.99), count(*)
        FROM (SELECT epoch(delivered_at - sent_at) AS l FROM messages
              WHERE category = 'otp' AND delivered_at IS NOT NULL AND sent_at IS NOT NULL)""")
    shown = metrics(app)
    assert (shown["p50"], shown["p90"], shown["p99"]) == (
        f"{p50:.1f} s", f"{p90:.1f} s", f"{p99:.1f} s")
    assert shown["Delivered OTPs"] == f"{n:,}"
    [(started,)] = sql(snapshot_dir, "SELECT count(*) FROM events "
                                     "WHERE type = 'verification.started'")
    assert started > 0 and shown["Verifications started"] == f"{started:,}"


def test_unreachable_page_masks_and_counts(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "unreachable")
    expected = dict(sql(snapshot_dir, "SELECT verdict, count(*) FROM numbers "
                                      "WHERE verdict <> 'ok' GROUP BY 1"))
    assert "unreachable" in expected and "remove" in expected
    shown = metrics(app)
    for verdict, count in expected.items():
        assert shown[verdict.replace("_", " ").capitalize()] == str(count)
    table = app.dataframe[0].value
    assert len(table) == sum(expected.values())
    assert all(p.startswith("•••") and len(p) == 7 for p in table["phone"])
    row = table[table["phone"] == "•••" + snapshot_data.UNREACHABLE[-4:]].iloc[0]
    assert row["verdict"] == "Unreachable" and row["error_codes"] == "30003x3"
    app.multiselect(key="verdicts").set_value(["unreachable"]).run()
    assert list(app.dataframe[0].value["verdict"].unique()) == ["Unreachable"]


def test_unmasked_when_configured(snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(snapshot_dir))
    monkeypatch.setenv("SMSLEDGER_SHOW_NUMBERS", "1")
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    goto(at, "unreachable")
    assert snapshot_data.UNREACHABLE in set(at.dataframe[0].value["phone"])
    st.cache_resource.clear()


def test_opt_outs_page(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "opt_outs")
    [(outs,)] = sql(snapshot_dir, "SELECT count(*) FROM events WHERE type = 'contact.opted_out'")
    if outs:
        assert metrics(app)["Opt-outs"] == str(outs)
    else:
        assert "No opt-outs" in app.info[0].value


def test_explorer_shows_a_whole_timeline(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "explorer")
    [(sid, n)] = sql(snapshot_dir, "SELECT message_sid, count(*) FROM events "
                                   "WHERE message_sid LIKE 'SM%' GROUP BY 1 "
                                   "ORDER BY 2 DESC, 1 LIMIT 1")
    app.text_input(key="explore").input(sid).run()
    line = app.dataframe[0].value
    assert len(line) == n and line["What"].iloc[0] in ("Sent to Twilio", "Status from Twilio")
    app.text_input(key="explore").input("SM" + "0" * 32).run()
    assert "No events" in app.warning[0].value


def test_missing_snapshot_is_a_clear_message(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "No analytics yet" in at.warning[0].value
    st.cache_resource.clear()


def test_empty_snapshot_has_empty_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         db_url: str) -> None:
    from analytics.lake import write_pointer, writer_lake
    from analytics.model import open_model
    lake = writer_lake(tmp_path, db_url)
    con = open_model(lake)
    write_pointer(tmp_path, lake)
    con.close()
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "No messages in this range yet" in at.info[0].value
    for page in ("errors", "otp", "opt_outs"):
        goto(at, page)
        assert at.info, page
    goto(at, "unreachable")
    assert "No flagged numbers" in at.success[0].value
    st.cache_resource.clear()


def test_unreachable_catalog_is_a_clear_message(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog database down (here: a port nothing listens on): a plain error, no trace."""
    from analytics.lake import Lake, write_pointer
    from smsledger.devdb import free_port
    write_pointer(tmp_path, Lake(f"postgresql://nobody@127.0.0.1:{free_port()}/gone",
                                 "smsledger_lake", tmp_path / "lake" / "smsledger_lake"))
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "catalog database (PostgreSQL) cannot be reached" in at.error[0].value
    assert "Traceback" not in at.error[0].value
    st.cache_resource.clear()


def test_cost_page_shows_final_prices_apart_from_estimates(app: AppTest,
                                                           snapshot_dir: Path) -> None:
    goto(app, "cost")
    [(final, priced, messages)] = sql(snapshot_dir, """
        SELECT sum(p.price)::DOUBLE, count(p.message_sid), count(*)
        FROM messages m LEFT JOIN prices p USING (message_sid)""")
    assert priced > 50 and messages > priced      # some still estimated (queued, sent)
    shown = metrics(app)
    assert shown["Final (Twilio's price)"] == f"${final:,.4f}"
    assert shown["Estimated"] != "$0.0000"
    assert "a month" in app.info[0].value
    assert len(app.get("vega_lite_chart")) == 1
    by_country = app.dataframe[0].value
    assert by_country["final_usd"].sum() == pytest.approx(final)
    assert by_country["messages"].sum() == messages
