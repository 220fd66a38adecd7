"""Every dashboard page through Streamlit's AppTest, against a snapshot built by the real
rollup from simulated traffic; the figures shown are checked against the oracle
(``tests/oracle``: SQL of its own on the PostgreSQL event log), not against the model."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics.snapshot import open_snapshot
from dashboard import labels
from tests import snapshot_data
from tests.oracle import Filter, Oracle

APP = "../dashboard/app.py"
P99_MIN_SAMPLE = 100      # dashboard/views/otp.py shows p99 from this many OTPs on


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


@dataclasses.dataclass
class Truth:
    """The oracle's figures for the snapshot's event log, with the dashboard's default filter
    (the last 30 days, UTC): what each page must show."""
    overview: dict[str, Any]
    errors: dict[int, dict[str, Any]]
    delivery: dict[str, dict[str, dict[str, Any]]]
    otp: dict[str, dict[str, Any]]
    verify: dict[str, int]
    opt_outs: dict[tuple[str, str, str], int]
    hygiene: dict[str, dict[str, Any]]
    longest_timeline: tuple[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def truth(snapshot_dir: Path, snapshot_db: str) -> Truth:
    today = datetime.now(UTC).date()
    f = Filter(start=datetime.combine(today - timedelta(days=30), time(), UTC),
               end=datetime.combine(today + timedelta(days=1), time(), UTC))

    async def compute() -> Truth:
        conn = await asyncpg.connect(snapshot_db)
        try:
            oracle = await Oracle.open(conn)
            sid = await conn.fetchval("SELECT message_sid FROM events WHERE message_sid LIKE "
                                      "'SM%' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
            return Truth(
                overview=await oracle.overview(f), errors=await oracle.error_breakdown(f),
                delivery={dim: await oracle.delivery_by(dim, f)
                          for dim in ("carrier", "country")},
                otp=await oracle.otp_latency(None, f), verify=await oracle.verify(),
                opt_outs=await oracle.opt_outs(), hygiene=await oracle.hygiene(),
                longest_timeline=(sid, await oracle.timeline(sid)))
        finally:
            await conn.close()

    return asyncio.run(compute())


def number(text: str) -> float:
    """A figure as the page shows it ("1,234", "97.3 %", "4.2 s") as a number."""
    match = re.search(r"-?[0-9][0-9,]*(\.[0-9]+)?", text)
    assert match, text
    return float(match.group(0).replace(",", ""))


def shown_rounded(text: str, value: float, decimals: int) -> bool:
    """The page shows ``value`` rounded to ``decimals`` places."""
    return abs(number(text) - value) <= 0.5 * 10 ** -decimals + 1e-9


def close(a: Any, b: Any) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-9)


def code_of(label: str) -> str:
    """``United Kingdom (GB)`` → ``GB``; ``unknown`` stays."""
    match = re.search(r"\(([A-Z]{2})\)$", label)
    return match.group(1) if match else label


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


def test_overview_shows_the_true_figures(app: AppTest, truth: Truth) -> None:
    o = truth.overview
    shown = metrics(app)
    assert o["sends"] > 100
    assert number(shown["Sends"]) == o["sends"]
    assert number(shown["Failures"]) == o["failed"]
    assert shown_rounded(shown["Delivery rate"], 100 * o["delivery_rate"], 1)
    assert shown["Median OTP latency"] == labels.duration(o["otp_median_s"])
    assert "Data as of" in app.sidebar.caption[0].value
    assert len(app.get("vega_lite_chart")) == 3     # rate vs baseline, volume, funnel


def test_errors_page_lists_every_code_with_its_class(app: AppTest, truth: Truth) -> None:
    goto(app, "errors")
    table = app.dataframe[0].value
    assert dict(zip(table["error_code"], table["messages"], strict=True)) == {
        code: row["messages"] for code, row in truth.errors.items()}
    for code, share in zip(table["error_code"], table["share"], strict=True):
        assert abs(share - truth.errors[code]["share"]) < 1e-9
    classes = dict(zip(table["error_code"], table["class"], strict=True))
    if 30005 in classes:
        assert classes[30005] == "Number: permanent (stop texting it)"
    if 30007 in classes:
        assert classes[30007] == "Yours: content filtered"


def test_carriers_page_shows_each_carriers_true_rate(app: AppTest, truth: Truth) -> None:
    goto(app, "carriers")
    for frame, dim in ((app.dataframe[0].value, "carrier"), (app.dataframe[1].value, "country")):
        want = truth.delivery[dim]
        keys = [code_of(k) for k in frame[dim]] if dim == "country" else list(frame[dim])
        assert set(keys) == set(want), dim
        for key, (_, row) in zip(keys, frame.iterrows(), strict=True):
            for name in ("messages", "delivered", "failed"):
                assert row[name] == want[key][name], (dim, key, name)
            assert close(row["delivery_rate"], want[key]["delivery_rate"]), (dim, key)
            assert close(row["median_latency_s"], want[key]["median_latency_s"]), (dim, key)
        worst = min(r["delivery_rate"] for r in want.values() if r["delivery_rate"] is not None)
        assert frame.iloc[0]["flag"] == "▼ worst"
        assert close(frame.iloc[0]["delivery_rate"], worst)
    assert {"US", "GB"} <= set(truth.delivery["country"])


def test_otp_page_percentiles_and_verify(app: AppTest, truth: Truth) -> None:
    goto(app, "otp")
    otp = truth.otp["all"]
    shown = metrics(app)
    for p in ("p50", "p90", "p99"):
        thin = p == "p99" and otp["delivered"] < P99_MIN_SAMPLE
        assert shown[p] == ("–" if thin else labels.duration(otp[f"{p}_s"])), p
    assert number(shown["Delivered OTPs"]) == otp["delivered"]
    assert truth.verify["started"] > 0
    assert number(shown["Verifications started"]) == truth.verify["started"]
    assert number(shown["Approved"]) == truth.verify["approved"]


def test_unreachable_page_masks_and_counts(app: AppTest, truth: Truth) -> None:
    goto(app, "unreachable")
    expected: dict[str, int] = {}
    for row in truth.hygiene.values():
        if row["verdict"] != "ok":
            expected[row["verdict"]] = expected.get(row["verdict"], 0) + 1
    assert "unreachable" in expected and "remove" in expected
    shown = metrics(app)
    for verdict, count in expected.items():
        assert number(shown[verdict.replace("_", " ").capitalize()]) == count
    table = app.dataframe[0].value
    assert len(table) == sum(expected.values())
    assert all(p.startswith("•••") and len(p) == 7 for p in table["phone"])
    row = table[table["phone"] == "•••" + snapshot_data.UNREACHABLE[-4:]].iloc[0]
    assert row["verdict"] == "Unreachable" and row["error_codes"] == "30003x3"
    assert truth.hygiene[snapshot_data.UNREACHABLE]["verdict"] == "unreachable"
    app.multiselect(key="verdicts").set_value(["unreachable"]).run()
    assert list(app.dataframe[0].value["verdict"].unique()) == ["Unreachable"]
    assert len(app.dataframe[0].value) == expected["unreachable"]


def test_hygiene_download_lists_every_flagged_number_masked(app: AppTest, truth: Truth,
                                                            snapshot_dir: Path) -> None:
    """The Unreachable page's CSV (made on click, not on each run): every flagged number of
    the verdicts chosen, masked, in the page's order; the page's table is the head of it."""
    import csv
    import io

    from analytics import queries
    from dashboard.common import hygiene_csv

    goto(app, "unreachable")
    path = app.session_state["snapshot"]
    flagged = {p: r["verdict"] for p, r in truth.hygiene.items() if r["verdict"] != "ok"}
    rows = list(csv.DictReader(io.StringIO(hygiene_csv(path, None, ("remove", "unreachable",
                                                                    "blocked", "opted_out"))
                                           .decode())))
    assert sorted(r["phone"] for r in rows) == sorted("•••" + p[-4:] for p in flagged)
    assert [r["phone"] for r in rows][:len(app.dataframe[0].value)] == \
        list(app.dataframe[0].value["phone"])
    only = list(csv.DictReader(io.StringIO(hygiene_csv(path, None, ("unreachable",)).decode())))
    assert {r["verdict"] for r in only} == {"unreachable"}
    con = open_snapshot(snapshot_dir)
    try:
        full = queries.flagged_numbers(con)
        assert queries.flagged_numbers(con, limit=2)["phone"].tolist() == \
            full["phone"].head(2).tolist()
        assert queries.flagged_counts(con) == {
            v: sum(1 for x in flagged.values() if x == v) for v in set(flagged.values())}
    finally:
        con.close()


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


def test_opt_outs_page(app: AppTest, truth: Truth) -> None:
    goto(app, "opt_outs")
    totals = {kind: sum(n for (_, k, _), n in truth.opt_outs.items() if k == kind)
              for kind in ("opted_out", "opted_in", "help_requested")}
    assert totals["opted_out"] > 0        # the simulated traffic opens with STOPs
    shown = metrics(app)
    assert number(shown["Opt-outs"]) == totals["opted_out"]
    assert number(shown["Opt-ins"]) == totals["opted_in"]
    assert number(shown["Help requests"]) == totals["help_requested"]


def test_explorer_shows_a_whole_timeline(app: AppTest, truth: Truth) -> None:
    goto(app, "explorer")
    sid, line_events = truth.longest_timeline
    app.text_input(key="explore").input(sid).run()
    line = app.dataframe[0].value
    assert len(line) == len(line_events)
    assert line["What"].iloc[0] in ("Sent to Twilio", "Status from Twilio")
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


def test_fraud_page_shows_conversion_by_prefix(app: AppTest, snapshot_dir: Path) -> None:
    goto(app, "fraud")
    [(starts, approved)] = sql(snapshot_dir, """
        SELECT count(DISTINCT detail) FILTER (WHERE type = 'verification.started'),
               count(DISTINCT detail) FILTER (WHERE type = 'verification.checked'
                                              AND status = 'approved') FROM events""")
    assert starts > 0
    table = app.dataframe[-1].value
    assert table["verifications"].sum() == starts
    assert table["approvals"].sum() >= approved
    assert "No prefix looks pumped" in app.success[0].value      # ordinary simulated traffic
