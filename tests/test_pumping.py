"""SMS pumping: a planted attack (150 OTP sends to one prefix, none approved) opens a `pumping`
alert with its evidence, a legitimate burst with normal conversion does not; the fraud guard
refuses OTP sends and Verify starts to the prefix while the alert is open (nothing reaches
Twilio) and lets them through once it resolves. Real PostgreSQL, real DuckDB, the real rollup,
the real ingester with the real twilio client against the simulated Twilio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from analytics.alerts import AlertEngine, read_alert_log
from analytics.detectors import shipped
from ingest import fraud
from ingest.app import create_app
from schema.events import Event, EventType, verification
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger.devdb import free_port
from tests.conftest import TEST_TOKEN
from tests.factory import T0, append, at
from tests.test_alerts import only, rolled_up

NOW = T0 + timedelta(days=3)
ATTACK = "+1206555"            # the prefix: the number without its last 4 digits
LEGIT = "+1312555"


def verifications(prefix: str, start: datetime, count: int, *, approved_every: int,
                  spread_s: float, step: int = 7, key: str = "") -> list[Event]:
    """``count`` Verify starts to numbers in ``prefix`` (every ``step``-th number: no runs of
    consecutive ones), every ``approved_every``-th approved (0: none)."""
    out: list[Event] = []
    for i in range(count):
        when = start + timedelta(seconds=spread_s * i / count)
        to = f"{prefix}{(i * step) % 10_000:04d}"
        vsid = f"VE{key}{prefix[1:]}{i:06d}".ljust(34, "0")
        out.append(at(verification(EventType.VERIFICATION_STARTED, verification_sid=vsid,
                                   to=to, channel="sms", status="pending", requested_at=when,
                                   twilio_ms=100.0, request_id=f"s{i}"), when))
        if approved_every and i % approved_every == 0:
            out.append(at(verification(EventType.VERIFICATION_CHECKED, verification_sid=vsid,
                                       to=to, channel="sms", status="approved",
                                       requested_at=when, twilio_ms=100.0,
                                       request_id=f"c{i}"), when + timedelta(seconds=30)))
    return out


def history() -> list[Event]:
    """Two days of normal Verify traffic in the US: 4 of 5 approved."""
    out: list[Event] = []
    for n, prefix in enumerate(("+1415555", "+1646555", "+1702555")):
        out += verifications(prefix, NOW - timedelta(days=2), 100, approved_every=1,
                             spread_s=86400, key=str(n))
        # ... with a fifth never approved: people give up
    out = [e for i, e in enumerate(out)
           if not (e.type == EventType.VERIFICATION_CHECKED and i % 5 == 0)]
    return out


async def test_planted_attack_is_flagged_and_a_legitimate_burst_is_not(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    attack = verifications(ATTACK, NOW - timedelta(minutes=10), 150, approved_every=0,
                           spread_s=540, key="a")
    burst = verifications(LEGIT, NOW - timedelta(minutes=10), 150, approved_every=1,
                          spread_s=540, key="b")
    burst = [e for i, e in enumerate(burst)          # 1 in 6 never approved: normal
             if not (e.type == EventType.VERIFICATION_CHECKED and i % 6 == 1)]
    await append(db, history() + attack + burst)
    duck = await rolled_up(db_url, db, tmp_path / "m.duckdb")
    engine = AlertEngine(only("pumping"), shipped())
    opened = await engine.evaluate(duck, db, NOW)
    assert [e.payload["segment"]["prefix"] for e in opened] == [ATTACK]
    alert = opened[0].payload
    assert alert["rule"] == "pumping" and alert["segment"]["country"] == "US"
    assert alert["sample"] == 150 and alert["observed"] == 0
    assert alert["baseline"] == pytest.approx(0.8, abs=0.05)
    evidence = alert["evidence"]
    assert evidence["approvals"] == 0 and evidence["sends"] == 150
    assert set(evidence["signals"]) == {"conversion_collapse", "new_prefix"}
    assert "0 of 150 approved" in alert["text"] and "+1206555xxxx" in alert["text"]
    # A second tick opens nothing more; the legitimate burst stays quiet.
    assert await engine.evaluate(duck, db, NOW + timedelta(seconds=5)) == []
    assert [key for (_r, key) in (await read_alert_log(db)).open] == [
        "carrier=*,country=US,sender=*,prefix=+1206555,code=*"]
    # Once the attack's window has passed (three good windows), it resolves.
    later = NOW + timedelta(minutes=20)
    resolved = await engine.evaluate(duck, db, later)
    assert [e.type for e in resolved] == [EventType.ALERT_RESOLVED]
    duck.close()


async def test_sequential_numbers_and_fraud_block_codes_are_signals(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    # No conversion data at all (OTP through /v1/messages, no confirmations): only the
    # sequential run can speak, and it does.
    from tests.factory import message
    evs: list[Event] = []
    for i in range(60):
        evs += message(90_000 + i, f"{ATTACK}{1000 + i:04d}",
                       NOW - timedelta(minutes=10) + timedelta(seconds=5 * i),
                       "failed" if i % 4 == 0 else "delivered", 30453 if i % 4 == 0 else None)
    await append(db, evs)
    duck = await rolled_up(db_url, db, tmp_path / "s.duckdb")
    opened = await AlertEngine(only("pumping"), shipped()).evaluate(duck, db, NOW)
    assert len(opened) == 1
    evidence = opened[0].payload["evidence"]
    assert set(evidence["signals"]) == {"sequential_numbers", "fraud_block_codes"}
    assert evidence["longest_run"] == 60 and evidence["run"] == "…1000–…1059"
    assert evidence["fraud_block_codes"] == 15 and evidence["codes_seen"] == "30453"
    assert evidence["conversion_known"] is False
    duck.close()


ACCOUNT = "AC" + "9" * 32
API_KEY = "pumping-test-key-" + "e" * 16
VERIFY_SID = "VA" + "8" * 32
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def guarded(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[TwilioSim, Any]]:
    sim = TwilioSim(SimConfig(account_sid=ACCOUNT, auth_token=TEST_TOKEN, seed=3, numbers=20,
                              time_scale=0.01, verify_service_sid=VERIFY_SID))
    async with TestServer(create_sim_app(sim)) as sim_server:
        port = free_port()
        settings = Settings(
            database_url=db_url, twilio_account_sid=ACCOUNT,
            twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number="+15005550006",
            twilio_verify_service_sid=VERIFY_SID,
            twilio_api_url=str(sim_server.make_url("")).rstrip("/"), api_key=Secret(API_KEY),
            public_url=f"http://127.0.0.1:{port}", data_dir=tmp_path / "ingest",
            fraud_guard=True)
        async with TestClient(TestServer(create_app(settings), port=port)) as client:
            client.app[fraud.GUARD].ttl_s = 0      # see each change at once
            yield sim, client
            await sim.drain()


async def post(client: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with client.post(path, json=body, headers=AUTH) as resp:
        return resp.status, await resp.json()


async def test_guard_refuses_during_the_alert_and_allows_after_it_resolves(
        db_url: str, db: asyncpg.Connection, tmp_path: Path,
        guarded: tuple[TwilioSim, Any]) -> None:
    sim, client = guarded
    attack = verifications(ATTACK, NOW - timedelta(minutes=10), 150, approved_every=0,
                           spread_s=540, key="a")
    await append(db, history() + attack)
    duck = await rolled_up(db_url, db, tmp_path / "g.duckdb")
    engine = AlertEngine(only("pumping"), shipped())
    [opened] = await engine.evaluate(duck, db, NOW)
    alert_id = opened.payload["alert_id"]
    victim = f"{ATTACK}0123"
    created = sim.stats.created
    status, body = await post(client, "/v1/messages",
                              {"to": victim, "body": "Your code is 123456", "category": "otp"})
    assert status == 409, body
    assert body["reason"] == "pumping" and body["alert_id"] == alert_id
    assert body["prefix"] == ATTACK and "conversion_collapse" in body["signals"]
    assert "0 of 150 approved" in body["error"]
    status, body = await post(client, "/v1/verify/start", {"to": victim})
    assert status == 409 and body["alert_id"] == alert_id
    assert sim.stats.created == created and victim not in sim.verifications   # nothing sent
    refused = await db.fetch("SELECT payload->>'reason' AS reason, payload->>'detail' AS detail "
                             "FROM events WHERE type = 'message.refused'")
    assert [(r["reason"], r["detail"]) for r in refused] == [("pumping", alert_id)] * 2
    # Not an OTP: the guard leaves it alone. Another prefix: untouched.
    status, _ = await post(client, "/v1/messages", {"to": victim, "body": "Your order shipped",
                                                    "category": "transactional"})
    assert status == 201
    status, _ = await post(client, "/v1/verify/start", {"to": "+13125550123"})
    assert status == 201
    # The alert resolves: the block lifts.
    [resolved] = await engine.evaluate(duck, db, NOW + timedelta(minutes=20))
    assert resolved.type == EventType.ALERT_RESOLVED
    status, body = await post(client, "/v1/messages",
                              {"to": victim, "body": "Your code is 654321", "category": "otp"})
    assert status == 201, body
    status, _ = await post(client, "/v1/verify/start", {"to": victim})
    assert status == 201
    duck.close()


def test_incident_specs_are_checked() -> None:
    from sim.incidents import IncidentError, parse

    staged = parse("pumping:+1206555@60+300")
    assert (staged.kind, staged.target, staged.at_s, staged.duration_s) == (
        "pumping", "+1206555", 60.0, 300.0)
    assert staged.active(60) and staged.active(359) and not staged.active(360)
    assert parse("pumping:+44740@5").duration_s is None
    for bad, why in (("pumping@5", "needs a target"), ("pumping:1206@5", "the prefix must"),
                     ("meteor:+1@5", "unknown incident"), ("pumping:+1206555", "use KIND")):
        with pytest.raises(IncidentError, match=why):
            parse(bad)


async def test_simulated_pumping_incident_opens_the_alert(
        db_url: str, db: asyncpg.Connection, tmp_path: Path,
        guarded: tuple[TwilioSim, Any]) -> None:
    from datetime import UTC

    from sim.incidents import parse
    from sim.traffic import Traffic, TrafficConfig

    sim, client = guarded
    # The volume is fixed by count, not by rate x seconds: rounds of traffic until 60 pumped
    # verifications went through (a loaded machine sends fewer per second).
    pumped, rounds, deadline = 0, 0, asyncio.get_running_loop().time() + 90
    while pumped < 60:
        assert asyncio.get_running_loop().time() < deadline, f"{pumped} pumped sends"
        traffic = Traffic(sim, TrafficConfig(
            ingest_url=str(client.make_url("")).rstrip("/"),
            public_url=client.server.app[fraud.SETTINGS].public_url, api_key=API_KEY,
            our_number="+15005550006", rate=80, duration=1.5, seed=5 + rounds, verify=True,
            incidents=(parse(f"pumping:{ATTACK}@0"),)))
        counts = await traffic.run()
        pumped += sum(v for k, v in counts.items() if k.startswith("pumping verify http 201"))
        rounds += 1
    duck = await rolled_up(db_url, db, tmp_path / "i.duckdb")
    opened = await AlertEngine(only("pumping"), shipped()).evaluate(
        duck, db, datetime.now(UTC) + timedelta(seconds=1))
    assert [e.payload["segment"]["prefix"] for e in opened] == [ATTACK]
    evidence = opened[0].payload["evidence"]
    assert "sequential_numbers" in evidence["signals"] and evidence["approvals"] == 0
    assert evidence["verifications"] == pumped
    duck.close()
