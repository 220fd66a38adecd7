"""Money: estimates from the price table until Twilio's final price arrives, the final price
from the Messages API (the simulator fills it in late, like Twilio), failed-message fees and
their exemptions, multi-segment and MMS messages, wasted spend, and `smsledger report cost`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import duckdb
import pytest
from aiohttp.test_utils import TestServer

from analytics import cost
from analytics.hygiene import load_rules
from analytics.pricefill import PriceFill
from analytics.prices import PricesError, load_prices
from analytics.worker import WorkerConfig, run_worker
from schema import events
from schema.events import Event, Source
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from tests.conftest import TEST_TOKEN
from tests.factory import OUR, append, status
from tests.factory import rollup as rollup_once
from twilio_api.client import make_client

US, US2, GB = "+14155550123", "+14155550124", "+447400123456"
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def send(sid: str, to: str, when: datetime, segments: int = 1, category: str = "otp",
         media: int = 0) -> Event:
    return events.message_sent(sid=sid, to=to, from_=OUR, messaging_service_sid=None,
                               category=category, tags=[], segments=segments,
                               media_count=media, status="queued", requested_at=when,
                               source=Source.API, received_at=when)


def msg(sid: str, to: str, when: datetime, outcome: str, code: int | None = None,
        **kw: object) -> list[Event]:
    return [send(sid, to, when, **kw),  # type: ignore[arg-type]
            status(sid, to, outcome, when + timedelta(seconds=3), code)]


async def rollup(db_url: str, path: Path) -> tuple[duckdb.DuckDBPyConnection, object]:
    """The rollup, repeated until it has applied everything appended so far: the reader stops
    at the oldest transaction still open anywhere on the server (gap-free), and other
    sessions on a shared server hold it back for a moment now and then."""
    pg = await asyncpg.connect(db_url)
    try:
        last = await pg.fetchval("SELECT max(position) FROM events")
    finally:
        await pg.close()
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        con, result = await rollup_once(db_url, path)
        row = con.execute("SELECT max(position) FROM events").fetchone()
        if row is not None and row[0] == last:
            return con, result
        con.close()
        assert asyncio.get_running_loop().time() < deadline, "the rollup never caught up"
        await asyncio.sleep(0.1)


async def publish_all(db_url: str, db: asyncpg.Connection, data_dir: Path) -> None:
    """The worker's round (rollup, publish) until the snapshot holds every event so far."""
    from analytics.snapshot import open_snapshot

    last = await db.fetchval("SELECT max(position) FROM events")
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        await run_worker(WorkerConfig(database_url=db_url, data_dir=data_dir,
                                      rules=load_rules(), once=True, hygiene_every_s=0),
                         stop=asyncio.Event())
        con = open_snapshot(data_dir)
        try:
            row = con.execute("SELECT max(position) FROM events").fetchone()
        finally:
            con.close()
        if row is not None and row[0] == last:
            return
        assert asyncio.get_running_loop().time() < deadline, "the rollup never caught up"
        await asyncio.sleep(0.1)


def sid(n: int, kind: str = "SM") -> str:
    return f"{kind}{n:032x}"


async def planted(db: asyncpg.Connection) -> None:
    evs: list[Event] = []
    evs += msg(sid(1), US, T0, "delivered")                                   # 0.0079
    evs += msg(sid(2), US, T0, "delivered", segments=3, category="marketing")  # 0.0237
    evs += msg(sid(3, "MM"), US, T0, "delivered", media=1)                    # MMS 0.0200
    evs += msg(sid(4, "MM"), GB, T0, "delivered", segments=2, media=1)        # no MMS: 2 x 0.0524
    evs += msg(sid(5), US2, T0, "failed", 30006)                              # fee 0.001
    evs += msg(sid(6), US2, T0, "failed", 30450)                              # exempt: 0
    evs += msg(sid(7), US2, datetime(2024, 9, 1, tzinfo=UTC), "failed", 30006)  # before: 0
    evs += msg(sid(8), GB, T0 + timedelta(days=1), "undelivered", 30003)      # 0.0524 wasted
    await append(db, evs)


async def test_estimates_fees_segments_mms_and_the_final_price(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    prices = load_prices()
    await planted(db)
    con, _ = await rollup(db_url, tmp_path / "a.duckdb")
    by_day = cost.cost_by(con, prices, "day", since=T0 - timedelta(days=1))
    assert by_day["key"].tolist() == ["2026-11-02", "2026-11-03"]
    first = by_day.set_index("key").loc["2026-11-02"]
    expected = 0.0079 + 3 * 0.0079 + 0.0200 + 2 * 0.0524 + 0.001
    assert first["estimated_usd"] == pytest.approx(expected)
    assert first["final_usd"] == 0 and first["priced"] == 0
    assert first["segments"] == 1 + 3 + 1 + 2 + 1 + 1
    assert first["failed_fees_usd"] == pytest.approx(0.001)
    assert first["wasted_usd"] == pytest.approx(0.001)
    second = by_day.set_index("key").loc["2026-11-03"]
    assert second["wasted_usd"] == pytest.approx(0.0524)
    every = cost.cost_by(con, prices, "all").iloc[0]
    assert every["messages"] == 8                    # the 2024 one too, at no cost
    assert every["failed_fees_usd"] == pytest.approx(0.001)
    by_country = cost.cost_by(con, prices, "country").set_index("key")
    assert by_country.loc["GB", "total_usd"] == pytest.approx(3 * 0.0524)
    con.close()

    # Twilio's price arrives: it replaces the estimate (and a revision replaces the price).
    await append(db, [events.message_priced(sid=sid(1), amount=Decimal("0.0085"),
                                            raw_price="-0.00850", price_unit="usd",
                                            source=Source.RECONCILE)])
    con, _ = await rollup(db_url, tmp_path / "a.duckdb")
    row = cost.cost_by(con, prices, "category").set_index("key").loc["otp"]
    assert row["final_usd"] == pytest.approx(0.0085) and row["priced"] == 1
    assert row["estimated_usd"] == pytest.approx(0.0200 + 2 * 0.0524 + 0.001 + 0.0524)
    con.close()
    await append(db, [events.message_priced(sid=sid(1), amount=Decimal("0.0090"),
                                            raw_price="-0.00900", price_unit="USD",
                                            source=Source.RECONCILE)])
    con, _ = await rollup(db_url, tmp_path / "a.duckdb")
    assert con.execute("SELECT price::DOUBLE, price_unit FROM prices").fetchall() == [
        (0.009, "USD")]
    s = cost.summary(con, prices, now=T0 + timedelta(days=2))
    assert s.final_usd == pytest.approx(0.009) and s.priced == 1
    assert s.total_usd == pytest.approx(s.final_usd + s.estimated_usd)
    assert s.per_delivered_usd == pytest.approx(s.total_usd / 4)
    # Delivered OTPs: the two MMS and the first message (the marketing one is not an OTP).
    otp_spend = 0.009 + 0.02 + 2 * 0.0524 + 0.001 + 0 + 0 + 0.0524
    assert s.per_delivered_otp_usd == pytest.approx(otp_spend / 3)
    con.close()


async def test_wasted_spend_on_numbers_hygiene_removes_and_the_monthly_saving(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    dead = "+14155550199"
    evs: list[Event] = []
    # A landline that failed once (30006: remove) after two deliveries long ago, and a good
    # number: only the former's spend is the saving.
    evs += msg(sid(20), dead, now - timedelta(days=60), "delivered")
    evs += msg(sid(21), dead, now - timedelta(days=5), "undelivered", 30005, segments=2)
    evs += msg(sid(22), US, now - timedelta(days=5), "delivered")
    await append(db, evs)
    con, _ = await rollup(db_url, tmp_path / "b.duckdb")
    assert con.execute("SELECT verdict FROM numbers WHERE phone = ?", [dead]).fetchone() == (
        "remove",)
    s = cost.summary(con, load_prices(), now=now)
    assert s.wasted_usd == pytest.approx(3 * 0.0079)       # both messages to the dead number
    assert s.monthly_saving_usd == pytest.approx(2 * 0.0079)   # only the last 30 days
    con.close()


def test_price_table_replaced_by_a_file_and_checked(tmp_path: Path) -> None:
    shipped = load_prices()
    assert shipped.country("US").sms == 0.0079 and shipped.country("CA").mms == 0.02
    assert shipped.country("ZZ") == shipped.countries["default"]
    assert 30450 in shipped.failed_fee_exempt and 30036 in shipped.failed_fee_exempt
    for code in ("US", "GB", "DE", "FR", "IN", "BR"):         # the simulator's countries
        assert code in shipped.countries
    mine = tmp_path / "prices.toml"
    text = Path("analytics/prices.toml").read_text().replace("sms = 0.0079", "sms = 0.0100")
    mine.write_text(text)
    assert load_prices(mine).country("US").sms == 0.01
    mine.write_text(text.replace("failed_fee = 0.001", "failed_fee = -1"))
    with pytest.raises(PricesError, match="failed_fee must be a number >= 0"):
        load_prices(mine)
    mine.write_text("surprise = 1\n" + text)
    with pytest.raises(PricesError, match="unknown \\['surprise'\\]"):
        load_prices(mine)


async def test_simulator_prices_arrive_late_and_equal_the_report(
        db_url: str, db: asyncpg.Connection, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sim = TwilioSim(SimConfig(account_sid="AC" + "7" * 32, auth_token=TEST_TOKEN, seed=4,
                              numbers=80, time_scale=0.01, price_delay_s=1000))
    async with TestServer(create_sim_app(sim)) as server:
        client, http = make_client(Settings(
            twilio_account_sid="AC" + "7" * 32, twilio_auth_token=Secret(TEST_TOKEN),
            twilio_api_url=str(server.make_url("")).rstrip("/")))
        try:
            long = "x" * 300                                  # 2 GSM segments
            made = []
            for i, number in enumerate(n for n in sim.numbers if n.profile == "good"):
                if i >= 12:
                    break
                code, resource = sim.create_message(
                    {"To": number.e164, "From": OUR, "Body": long if i % 3 else "hi"},
                    ["https://example.test/a.png"] if i == 4 else [])
                assert code == 201
                made.append(resource)
            sent_at = datetime.now(UTC) - timedelta(hours=30)
            await append(db, [send(m["sid"], m["to"], sent_at, int(m["num_segments"]),
                                   media=int(m["num_media"])) for m in made])
            fill = PriceFill(after=timedelta(hours=24), limit=5)
            # Before Twilio filled them in: asked, none priced, nothing stored.
            early = await fill.run(client, db)
            assert (early.checked, early.priced, early.without_price) == (5, 0, 5)
            # Prices arrive 10 s after the final status (1000 s at a hundredth): room for the
            # early round on a slow machine (at 0.5 s it lost the race there).
            deadline = asyncio.get_running_loop().time() + 40
            while any(m["price"] is None for m in made):
                assert asyncio.get_running_loop().time() < deadline, "no prices from the sim"
                await asyncio.sleep(0.05)
            # Paged: 5 a round, so three rounds for 12, walking on from where it stopped
            # (the first round's page is asked again only after the walk wraps around).
            priced = 0
            for _ in range(4):
                priced += (await fill.run(client, db)).priced
            assert priced == 12
            again = await fill.run(client, db)
            assert again.priced == 0
        finally:
            await http.close()
    total = sum(-Decimal(m["price"]) for m in made)
    assert total > 0
    await publish_all(db_url, db, tmp_path)
    from smsledger.cli import main
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    assert main(["report", "cost", "--format", "csv", "--by", "country"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {"key", "messages", "segments", "estimated_usd", "final_usd", "failed_fees_usd",
            "wasted_usd"} <= set(rows[0])
    assert sum(Decimal(r["final_usd"]) for r in rows) == total
    assert sum(Decimal(r["estimated_usd"]) for r in rows) == 0
    assert sum(int(r["segments"]) for r in rows) == sum(int(m["num_segments"]) for m in made)
    assert main(["report", "cost", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert Decimal(str(report["summary"]["final_usd"])).quantize(Decimal("0.00001")) == total
    assert main(["report", "cost"]) == 0
    table = capsys.readouterr().out
    assert f"final (Twilio's price) {float(total):.4f} USD on 12 messages" in table
    assert main(["report", "cost", "--by", "planet"]) == 2
    assert "'planet' is not one of" in capsys.readouterr().err
    assert main(["report", "cost", "--since", "2026-11-02", "--until", "2026-11-01"]) == 2
    assert "--until must be after --since" in capsys.readouterr().err


async def test_messages_twilio_does_not_know_are_one_warning_a_round(
        db: asyncpg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    """Sends Twilio answers 404 for (another account's, or a database reused across
    simulators) are counted and said once a round, not a warning a message."""
    import logging

    sim = TwilioSim(SimConfig(account_sid="AC" + "7" * 32, auth_token=TEST_TOKEN, seed=4,
                              numbers=10))
    async with TestServer(create_sim_app(sim)) as server:
        client, http = make_client(Settings(
            twilio_account_sid="AC" + "7" * 32, twilio_auth_token=Secret(TEST_TOKEN),
            twilio_api_url=str(server.make_url("")).rstrip("/")))
        try:
            sent_at = datetime.now(UTC) - timedelta(hours=30)
            await append(db, [send(f"SM{n:032x}", "+14155550100", sent_at) for n in range(7)])
            with caplog.at_level(logging.DEBUG, logger="smsledger.analytics.pricefill"):
                result = await PriceFill(after=timedelta(hours=24), limit=50).run(client, db)
        finally:
            await http.close()
    assert (result.checked, result.priced, result.refused) == (0, 0, 7)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "refused 7 of 7 messages (HTTP 404 code 20404 ×7)" in warnings[0].getMessage()
    assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'message.priced'") == 0
