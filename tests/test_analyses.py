"""The analyses the dashboard and the reports share, on planted data with known answers; and
the worker's Lookup enrichment against the simulated Twilio."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from analytics import queries
from analytics.hygiene import load_rules
from analytics.queries import Filters
from analytics.snapshot import open_snapshot
from analytics.worker import WorkerConfig, run_worker
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from tests.conftest import TEST_TOKEN, roll_up_everything
from tests.factory import T0, append, inbound, message, rollup
from twilio_api.client import make_client

US, GB = "+14155550123", "+447400123456"


async def planted(db: asyncpg.Connection) -> None:
    evs = []
    # 10 OTPs to the US number: latencies 1..10 s, all delivered.
    for n in range(10):
        evs += message(n, US, T0 + timedelta(minutes=n), latency_s=n + 1.0)
    # 4 OTPs to GB: slow (20 s), 2 delivered, 2 failed 30003.
    for n in range(10, 14):
        outcome, code = ("delivered", None) if n < 12 else ("undelivered", 30003)
        evs += message(n, GB, T0 + timedelta(hours=1, minutes=n), outcome, code, 20.0)
    # 2 marketing messages to US, filtered by the carrier.
    for n in range(14, 16):
        evs += message(n, US, T0 + timedelta(days=1), "undelivered", 30007,
                       category="marketing")
    evs += inbound(99, GB, "STOP", T0 + timedelta(days=1))
    await append(db, evs)


async def test_overview_latency_errors_and_timeline(db_url: str, db: asyncpg.Connection,
                                                    tmp_path: Path) -> None:
    await planted(db)
    con, _ = await rollup(db_url, tmp_path / "a.duckdb")
    o = queries.overview(con)
    assert (o["sends"], o["delivered"], o["failed"]) == (16, 12, 4)
    assert o["delivery_rate"] == pytest.approx(12 / 16)
    lat = queries.otp_latency(con, "country").set_index("country")
    assert lat.loc["US", "p50_s"] == pytest.approx(5.5)
    assert lat.loc["US", "delivered"] == 10 and not lat.loc["US", "slow"]
    assert lat.loc["GB", "p50_s"] == pytest.approx(20.0) and lat.loc["GB", "slow"]
    errors = queries.error_breakdown(con).set_index("error_code")
    assert errors.loc[30003, "messages"] == 2 and errors.loc[30003, "class"] == "temporary"
    assert errors.loc[30007, "class"] == "sender_content"
    assert errors.loc[30007, "meaning"] == "Message filtered by carrier"
    by_cat = queries.delivery_by(con, "category").set_index("category")
    assert by_cat.loc["marketing", "failed"] == 2 and by_cat.loc["otp", "delivered"] == 12
    day1 = queries.overview(con, Filters(start=T0 + timedelta(hours=12)))
    assert day1["sends"] == 2
    assert queries.overview(con, Filters(country="GB"))["sends"] == 4
    funnel = queries.status_funnel(con)
    assert funnel["count"].tolist() == [16, 16, 12]
    outs = queries.opt_outs(con)
    assert outs[["kind", "keyword", "events"]].values.tolist() == [["opted_out", "STOP", 1]]
    line = queries.timeline(con, f"SM{3:032x}")
    assert line["type"].tolist() == ["message.sent", "message.status", "message.status"]
    assert line["status"].tolist() == ["queued", "sent", "delivered"]
    assert len(queries.timeline(con, GB)) == 4 * 3 + 2
    assert queries.flagged_numbers(con)["phone"].tolist() == [GB]   # opted out


async def test_worker_enriches_carriers_with_lookup(db_url: str, db: asyncpg.Connection,
                                                    tmp_path: Path) -> None:
    await planted(db)
    sim = TwilioSim(SimConfig(account_sid="AC" + "1" * 32, auth_token=TEST_TOKEN, seed=1,
                              numbers=10))
    async with TestServer(create_sim_app(sim)) as server:
        settings = Settings(twilio_account_sid="AC" + "1" * 32,
                            twilio_auth_token=Secret(TEST_TOKEN),
                            twilio_api_url=str(server.make_url("")).rstrip("/"))
        client, http = make_client(settings)
        config = WorkerConfig(database_url=db_url, data_dir=tmp_path, rules=load_rules(),
                              once=True, lookup_limit=10, hygiene_every_s=0)
        try:
            await roll_up_everything(db_url, tmp_path)   # the model knows every number
            await run_worker(config, client, stop=asyncio.Event())
            looked = await db.fetch("SELECT phone, payload->>'carrier_name' AS carrier "
                                    "FROM events WHERE type = 'number.looked_up' "
                                    "ORDER BY phone")
            assert [r["phone"] for r in looked] == sorted([US, GB])
            await roll_up_everything(db_url, tmp_path)   # applies the answers
        finally:
            await http.close()
    con = open_snapshot(tmp_path)
    rows = dict((r[0], r[1:]) for r in con.execute(
        "SELECT phone, carrier, carrier_source, line_type FROM numbers").fetchall())
    assert rows[US] == (sim.number(US).carrier, "lookup", "mobile")
    assert rows[GB][1] == "lookup"
    assert queries.data_as_of(con) is not None


def test_fast_number_description_matches_a_full_parse() -> None:
    import random

    import phonenumbers

    from analytics import phones
    from sim import world

    for number in world.make_numbers(11, 600):
        parsed = phonenumbers.parse(number.e164, None)
        country, hint, _ = phones.describe(number.e164)
        assert country == phonenumbers.region_code_for_number(parsed), number.e164
        assert hint == (phonenumbers.carrier.name_for_number(parsed, "en") or None), number.e164
    # Numbers libphonenumber holds invalid get no carrier, though their prefix names one (the
    # Ofcom drama range 07700 900xxx is O2's prefix): phonenumbers' name_for_number, the oracle.
    rng = random.Random(5)
    for e164 in ["+447700900123", *(f"+447700{rng.randint(0, 999999):06d}" for _ in range(300)),
                 *(f"+33{rng.randint(600000000, 799999999)}" for _ in range(300))]:
        expected = phonenumbers.carrier.name_for_number(phonenumbers.parse(e164), "en") or None
        assert phones.describe(e164)[1] == expected, e164
    assert phones.describe("+447700900123")[1] is None
    assert phones.describe("ACME") == (None, None, None)
    assert phones.describe("+12025550143")[0] == "US"
    assert phones.describe("+1") == (None, None, None)
