"""List hygiene: each rule on a planted history, and the near misses that must not trigger;
the report; and the loop closing through the event log."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from analytics.hygiene import RulesError, load_rules
from analytics.report import hygiene_report
from schema import store
from tests.factory import T0, append, inbound, message, rollup

DAY = timedelta(days=1)

# phone -> list of (day offset, outcome, code); each entry one message.
HISTORIES: dict[str, tuple[list[tuple[float, str, int | None]], str]] = {
    "+14155550101": ([(0, "undelivered", 30005)], "remove"),
    "+14155550102": ([(0, "failed", 30006)], "remove"),
    "+14155550103": ([(0, "failed", 21614)], "remove"),
    "+14155550104": ([(0, "failed", 21211)], "remove"),
    "+14155550105": ([(0, "undelivered", 30005), (1, "delivered", None)], "ok"),
    "+14155550106": ([(0, "failed", 21610)], "opted_out"),
    "+14155550107": ([(0, "undelivered", 30003), (0.5, "undelivered", 30003),
                      (1.2, "undelivered", 30003)], "unreachable"),
    # near misses for unreachable:
    "+14155550108": ([(0, "undelivered", 30003), (0.01, "undelivered", 30003),
                      (0.02, "undelivered", 30003), (0.03, "undelivered", 30003)], "ok"),
    "+14155550109": ([(0, "undelivered", 30003), (1.5, "undelivered", 30003)], "ok"),
    "+14155550110": ([(0, "undelivered", 30003), (0.5, "delivered", None),
                      (1.0, "undelivered", 30003), (1.5, "undelivered", 30003)], "ok"),
    "+14155550111": ([(0, "undelivered", 30004)], "blocked"),
    # never the number's fault:
    "+14155550112": ([(0, "undelivered", 30007)] * 3 + [(1, "undelivered", 30007)] * 3, "ok"),
    "+14155550113": ([(0, "failed", 30022), (1, "failed", 30034), (2, "failed", 30032)], "ok"),
    "+14155550114": ([(0, "delivered", None)] * 3, "ok"),
}


async def plant(db: asyncpg.Connection) -> None:
    n = 0
    evs = []
    for phone, (history, _) in HISTORIES.items():
        for offset, outcome, code in history:
            n += 1
            evs.extend(message(n, phone, T0 + offset * DAY + timedelta(minutes=n), outcome,
                               code))
    evs += inbound(9001, "+14155550120", "STOP", T0)
    evs += inbound(9002, "+14155550121", "STOP", T0)
    evs += inbound(9003, "+14155550121", "start", T0 + DAY)
    await append(db, evs)


async def verdicts(db_url: str, path: Path) -> dict[str, tuple[Any, ...]]:
    duck, _ = await rollup(db_url, path)
    rows = duck.execute("SELECT phone, verdict, reason, action, consecutive_failures, "
                        "error_codes FROM numbers").fetchall()
    duck.close()
    return {r[0]: r[1:] for r in rows}


async def test_each_rule_and_its_near_misses(db_url: str, db: asyncpg.Connection,
                                             tmp_path: Path) -> None:
    await plant(db)
    got = await verdicts(db_url, tmp_path / "h.duckdb")
    for phone, (_, expected) in HISTORIES.items():
        assert got[phone][0] == expected, (phone, got[phone])
    assert got["+14155550120"][0] == "opted_out"
    assert got["+14155550120"][1] == "opted out: replied STOP"
    assert got["+14155550121"][0] == "ok"       # STOP then START
    assert got["+14155550107"][1] == ("unreachable: 30003 on 3 sends over 2 days with no "
                                      "delivery in between")
    assert got["+14155550101"][1].startswith("30005 Unknown destination handset")
    assert got["+14155550101"][2] == "remove from your list"
    assert got["+14155550110"][3] == 2          # consecutive failures since the delivery
    assert got["+14155550112"][4] == "30007x6"


async def test_report_writes_evidence_and_closes_the_loop(db_url: str, db: asyncpg.Connection,
                                                          tmp_path: Path) -> None:
    await plant(db)
    duck, _ = await rollup(db_url, tmp_path / "h.duckdb")
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with TestServer(app) as server:
        report = await hygiene_report(duck, db, load_rules(), tmp_path / "reports",
                                      str(server.make_url("/hook")))
    with report.csv_path.open() as f:
        rows = list(csv.DictReader(f))
    by_phone = {r["phone"]: r for r in rows}
    expected = {p for p, (_, v) in HISTORIES.items() if v != "ok"} | {"+14155550120"}
    assert set(by_phone) == expected
    row = by_phone["+14155550107"]
    assert row["verdict"] == "unreachable" and row["error_codes"] == "30003x3"
    assert row["failures"] == "3" and row["rules_version"] == "2026-11.1"
    assert row["first_failure_at"].startswith("2026-11-01T12")
    assert row["recommended_action"] == "pause sending; confirm the number with the customer"
    assert "unreachable" in report.html_path.read_text()
    assert (tmp_path / "reports" / "hygiene-latest.csv").read_bytes() == \
        report.csv_path.read_bytes()
    # New removals are suppressed through the event log, and the send path refuses them.
    assert report.suppressed_now == 6   # 4 remove + 1 unreachable + 1 blocked
    block = await store.send_block(db, "+14155550101")
    assert block is not None and block.reason == "suppressed"
    assert await store.send_block(db, "+14155550114") is None
    assert received == [report.summary()]
    assert received[0]["by_verdict"] == {"remove": 4, "unreachable": 1, "blocked": 1,
                                         "opted_out": 2}
    # The same evidence suppresses once: a second report appends nothing.
    again = await hygiene_report(duck, db, load_rules(), tmp_path / "reports")
    assert again.suppressed_now == 0


async def test_rules_are_configuration(tmp_path: Path, db_url: str, db: asyncpg.Connection,
                                       ) -> None:
    """A stricter rule set turns a near miss into a verdict; a malformed one is refused."""
    strict = tmp_path / "rules.toml"
    strict.write_text(
        'version = "strict-1"\npermanent_codes = [30005]\nopt_out_codes = [21610]\n'
        'unreachable_codes = [30003]\nunreachable_min_failures = 2\n'
        'unreachable_min_days = 1\nblocked_codes = []\n')
    rules = load_rules(strict)
    assert rules.version == "strict-1" and rules.unreachable_min_failures == 2
    await plant(db)
    duck, _ = await rollup(db_url, tmp_path / "strict", rules=rules)
    got = dict(duck.execute("SELECT phone, verdict FROM numbers").fetchall())
    assert got["+14155550109"] == "unreachable"   # 2 failures over 2 days now suffice
    assert got["+14155550102"] == "ok"            # 30006 is no longer permanent here
    assert got["+14155550111"] == "ok"            # no blocked codes
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\npermanent_codes = "30005"\n')
    with pytest.raises(RulesError, match="missing"):
        load_rules(bad)
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.toml")


async def test_cli_report_needs_a_snapshot(tmp_path: Path, db_url: str,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from smsledger.cli import main
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    assert main(["report", "hygiene"]) == 2
    assert "no analytics snapshot" in capsys.readouterr().err


def test_summary_is_json(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from analytics.report import HygieneReport
    report = HygieneReport(tmp_path / "a.csv", tmp_path / "a.html", [], {"remove": 1}, 1, "v1",
                           datetime(2026, 11, 26, tzinfo=UTC))
    assert json.loads(json.dumps(report.summary()))["by_verdict"] == {"remove": 1}


def test_html_report_escapes_and_names_its_columns(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from analytics.report import COLUMNS, HTML_COLUMNS, write_files
    rules = load_rules()
    row = {c: None for c in COLUMNS} | {
        "phone": "+14155550101", "verdict": "remove", "reason": "<script>alert(1)</script> & co",
        "sends": 3, "carrier": "Carrier<b>X</b>",
        "last_failure_at": datetime(2026, 11, 2, 9, 30, tzinfo=UTC)}
    _, html_path = write_files([row], {"remove": 1, "<i>odd</i>": 2}, tmp_path, rules,
                               datetime(2026, 11, 30, 12, tzinfo=UTC))
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "<i>odd</i>" not in page and "<b>&lt;i&gt;odd&lt;/i&gt;</b>: 2" in page
    headers = [h.split("</th>")[0] for h in page.split("<th>")[1:]]
    assert headers == HTML_COLUMNS and set(HTML_COLUMNS) <= set(COLUMNS)
    assert "Carrier" not in page                       # the CSV's column, not the summary's
    assert "2026-11-02T09:30:00Z" in page and "rules " + rules.version in page
    assert (tmp_path / "hygiene-latest.html").read_text() == page
