"""Twilio's 2024-2026 error codes and statuses (issue 14, item 3): the new codes are in the
versioned catalogue with their class, registration/compliance and pumping codes never count
against a number's hygiene, and `partially_delivered` / `canceled` count as the README says in
the final status, the funnel, the delivery rate and the segments. Through the real rollup."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from analytics import queries
from analytics.hygiene import load_rules
from analytics.model import error_catalogue
from schema import events
from schema.events import Event, Source
from tests.factory import OUR, T0, append, message, rollup, status

DAY = timedelta(days=1)
NOT_THE_NUMBERS_FAULT = {"sender_registration", "sender_configuration", "sender_capacity",
                         "sender_content", "fraud_signal"}


def test_the_catalogue_has_the_new_codes_with_their_class() -> None:
    catalogue = {code: (meaning, klass, version)
                 for code, meaning, klass, version in error_catalogue()}
    expected = {30032: "sender_registration", 30034: "sender_registration",
                30035: "sender_registration", 30909: "sender_registration",
                30923: "sender_registration", 30990: "sender_registration",
                30036: "sender_capacity", 30450: "fraud_signal", 30453: "fraud_signal",
                60410: "fraud_signal"}
    for code, klass in expected.items():
        assert catalogue[code][1] == klass, code
        assert catalogue[code][0]
    assert "Toll-free" in catalogue[30032][0] and "Validity period" in catalogue[30036][0]
    assert "Fraud Guard" in catalogue[60410][0]
    assert {v for _, _, v in catalogue.values()} == {"2026-11.2"}   # one catalogue version


def test_no_hygiene_rule_names_a_sender_or_fraud_code() -> None:
    """The rules' code lists and the catalogue's sender/fraud classes never meet."""
    rules = load_rules()
    ruled = set(rules.permanent_codes) | set(rules.opt_out_codes) | \
        set(rules.unreachable_codes) | set(rules.blocked_codes)
    theirs = {code for code, _, klass, _ in error_catalogue() if klass in NOT_THE_NUMBERS_FAULT}
    assert {30032, 30034, 30035, 30036, 30450, 30453, 30909, 30923, 30990} <= theirs
    assert ruled.isdisjoint(theirs)


async def test_sender_and_pumping_codes_never_count_against_a_number(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    """Four failures over four days, as many as make 30003 'unreachable', of each code."""
    codes = [30032, 30034, 30035, 30036, 30450, 30453, 30909, 30923, 30990]
    evs: list[Event] = []
    n = 0
    for i, code in enumerate(codes):
        phone = f"+1415555{i:04d}"
        for day in range(4):
            n += 1
            evs += message(n, phone, T0 + day * DAY + timedelta(minutes=n), "failed", code)
    control = "+14155559999"
    for day in range(4):   # the same shape with 30003 is flagged: the test can tell
        n += 1
        evs += message(n, control, T0 + day * DAY + timedelta(minutes=n), "undelivered", 30003)
    await append(db, evs)
    duck, _ = await rollup(db_url, tmp_path / "c.duckdb")
    verdicts = dict(duck.execute("SELECT phone, verdict FROM numbers").fetchall())
    assert verdicts.pop(control) == "unreachable"
    assert len(verdicts) == len(codes) and set(verdicts.values()) == {"ok"}
    errors = queries.error_breakdown(duck).set_index("error_code")
    assert errors.loc[30034, "class"] == "sender_registration"
    assert errors.loc[30453, "class"] == "fraud_signal"


def sent(n: int, to: str, segments: int, *, status_: str = "queued") -> tuple[str, Event]:
    sid = f"SM{n:032x}"
    return sid, events.message_sent(
        sid=sid, to=to, from_=OUR, messaging_service_sid=None, category="transactional",
        tags=[], segments=segments, media_count=0, status=status_, requested_at=T0,
        source=Source.API, received_at=T0)


async def test_partially_delivered_and_canceled_count_as_documented(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    phone = "+14155550142"
    t = T0 + timedelta(seconds=5)
    evs: list[Event] = []
    plan = [  # (segments, statuses in arrival order)
        (1, ["sent", "delivered"]),
        (3, ["sent", "partially_delivered"]),
        (3, ["sent", "partially_delivered", "undelivered"]),   # a late failure receipt
        (2, ["undelivered", "sent"]),                           # reordered callbacks
        (4, ["canceled"]),
    ]
    for n, (segments, statuses) in enumerate(plan, start=1):
        sid, event = sent(n, phone, segments, status_="scheduled" if n == 5 else "queued")
        evs.append(event)
        for i, st in enumerate(statuses):
            code = 30003 if st == "undelivered" else None
            evs.append(status(sid, phone, st, t + timedelta(seconds=i), code))
    await append(db, evs)
    duck, _ = await rollup(db_url, tmp_path / "s.duckdb")
    finals = [r[0] for r in duck.execute(
        "SELECT status FROM messages ORDER BY message_sid").fetchall()]
    assert finals == ["delivered", "partially_delivered", "partially_delivered",
                      "undelivered", "canceled"]
    o = queries.overview(duck)
    assert (o["sends"], o["delivered"], o["failed"], o["canceled"]) == (5, 3, 1, 1)
    assert o["delivery_rate"] == pytest.approx(3 / 4)       # canceled is not in it
    assert o["segments"] == 1 + 3 + 3 + 2                    # canceled sent no segment
    funnel = dict(queries.status_funnel(duck).values.tolist())
    assert funnel == {"handed to Twilio": 5, "sent to carrier": 4, "delivered": 3}
    by_day = queries.delivery_by(duck, "day")
    assert by_day[["messages", "delivered", "failed"]].values.tolist() == [[5, 3, 1]]
    daily = duck.execute("SELECT sum(messages), sum(delivered), sum(failed), sum(segments) "
                         "FROM daily").fetchone()
    assert daily == (5, 3, 1, 9)
    number = duck.execute("SELECT deliveries, failures, verdict FROM numbers "
                          "WHERE phone = ?", [phone]).fetchone()
    assert number == (3, 1, "ok")
