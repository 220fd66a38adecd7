"""Sending, OTP and the simulator, end to end: the real twilio client in the ingester talks to
the simulated Twilio, which answers in Twilio's shapes and sends signed callbacks back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from ingest.app import create_app
from schema.events import EventType, Source, suppression
from schema.settings import Secret, Settings
from sim import world
from sim.traffic import Traffic, TrafficConfig
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger.devdb import free_port
from tests.conftest import TEST_TOKEN

ACCOUNT = "AC" + "1" * 32
API_KEY = "test-api-key-" + "f" * 20
VERIFY_SID = "VA" + "2" * 32
OUR_NUMBER = "+15005550006"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclasses.dataclass
class World:
    sim: TwilioSim
    client: TestClient[Any, Any]
    settings: Settings
    db: asyncpg.Connection

    def number(self, profile: str) -> str:
        return self.sim.numbers_with(profile)[0].e164

    async def send(self, to: str, **extra: Any) -> tuple[int, dict[str, Any]]:
        body = {"to": to, "body": "Your code is 123456", "category": "otp", **extra}
        async with self.client.post("/v1/messages", json=body, headers=AUTH) as resp:
            return resp.status, await resp.json()

    async def events(self, where: str = "true", *args: Any) -> list[asyncpg.Record]:
        return list(await self.db.fetch(
            f"SELECT * FROM events WHERE {where} ORDER BY position", *args))


def sim_config(**overrides: Any) -> SimConfig:
    return SimConfig(**{**dict(account_sid=ACCOUNT, auth_token=TEST_TOKEN, seed=3, numbers=400,
                               time_scale=0.01, duplicate_rate=0.3, reorder_rate=0.3,
                               verify_service_sid=VERIFY_SID), **overrides})


@pytest.fixture
async def w(db_url: str, db: asyncpg.Connection, tmp_path: Path) -> AsyncIterator[World]:
    sim = TwilioSim(sim_config())
    async with TestServer(create_sim_app(sim)) as sim_server:
        port = free_port()
        settings = Settings(
            database_url=db_url, twilio_account_sid=ACCOUNT,
            twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number=OUR_NUMBER,
            twilio_verify_service_sid=VERIFY_SID,
            twilio_api_url=str(sim_server.make_url("")).rstrip("/"),
            api_key=Secret(API_KEY), public_url=f"http://127.0.0.1:{port}",
            data_dir=tmp_path)
        async with TestClient(TestServer(create_app(settings), port=port)) as client:
            yield World(sim, client, settings, db)


async def test_send_records_sent_and_signed_callbacks_become_status_events(w: World) -> None:
    status, body = await w.send(w.number("good"), tags=["login"])
    assert status == 201 and body["recorded"] is True and body["status"] == "queued"
    sid = body["sid"]
    await w.sim.drain()
    rows = await w.events("message_sid = $1", sid)
    assert rows[0]["type"] == "message.sent"
    payload = json.loads(rows[0]["payload"])
    assert payload["category"] == "otp" and payload["tags"] == ["login"]
    assert payload["segments"] == 1 and payload["from"] == OUR_NUMBER
    statuses = {r["status"] for r in rows if r["type"] == "message.status"}
    assert statuses == {"sent", w.sim.messages[sid]["status"]}
    # Duplicated callbacks (30% in this world) stored nothing twice.
    keys = [r["idempotency_key"] for r in rows]
    assert len(keys) == len(set(keys))


async def test_undelivered_callback_carries_the_error_code(w: World) -> None:
    status, body = await w.send(w.number("dead"))
    assert status == 201
    await w.sim.drain()
    final = await w.events("message_sid = $1 AND status = 'undelivered'", body["sid"])
    assert [r["error_code"] for r in final] == [30005]
    assert "RawDlrDoneDate" in json.loads(final[0]["payload"])


async def test_opt_out_loop(w: World) -> None:
    phone = w.number("good")
    inbound = str(w.client.make_url("/twilio/inbound"))
    sign_url = w.settings.public_url + "/twilio/inbound"
    assert await w.sim.send_inbound(inbound, phone, OUR_NUMBER, "Stop", sign_url) == 200
    status, body = await w.send(phone)
    assert status == 409
    assert body["reason"] == "opted_out" and body["detail"] == "STOP" and body["since"]
    created = w.sim.stats.created
    assert await w.sim.send_inbound(inbound, phone, OUR_NUMBER, "START", sign_url) == 200
    status, body = await w.send(phone)
    assert status == 201
    assert w.sim.stats.created == created + 1
    # The sent message's status callbacks may already be arriving (the simulator runs at a
    # hundredth of Twilio's delays): they are not part of the loop.
    types = [r["type"] for r in await w.events("phone = $1 AND type <> 'message.status'", phone)]
    assert types == ["message.inbound", "contact.opted_out", "message.refused",
                     "message.inbound", "contact.opted_in", "message.sent"]


async def test_suppressed_number_is_refused_before_twilio(w: World) -> None:
    phone = w.number("good")
    async with w.db.transaction():
        from schema import store
        await store.append(w.db, [suppression(EventType.CONTACT_SUPPRESSED, phone=phone,
                                              reason="30005 unknown handset",
                                              source=Source.ANALYTICS, key_suffix="r1")])
    status, body = await w.send(phone)
    assert status == 409 and body["reason"] == "suppressed"
    assert "30005 unknown handset" in body["error"]
    assert w.sim.stats.created == 0


async def test_twilio_refusal_is_stored_and_returned(w: World) -> None:
    phone = w.number("not_mobile")
    status, body = await w.send(phone)
    assert status == 400 and body["twilio_code"] == 21614
    rows = await w.events("type = 'message.send_failed'")
    assert [(r["phone"], r["error_code"]) for r in rows] == [(phone, 21614)]


async def test_verify_start_and_check(w: World) -> None:
    phone = w.number("good")
    async with w.client.post("/v1/verify/start", json={"to": phone}, headers=AUTH) as resp:
        assert resp.status == 201
        started = await resp.json()
    assert started["status"] == "pending"
    code = w.sim.inbox[phone][-1].rsplit(" ", 1)[1]
    wrong = "000000" if code != "000000" else "111111"
    async with w.client.post("/v1/verify/check", json={"to": phone, "code": wrong},
                             headers=AUTH) as resp:
        assert (await resp.json())["status"] == "pending"
    async with w.client.post("/v1/verify/check", json={"to": phone, "code": code},
                             headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "approved"
    rows = await w.events("type LIKE 'verification.%'")
    assert [(r["type"], r["status"]) for r in rows] == [
        ("verification.started", "pending"), ("verification.checked", "pending"),
        ("verification.checked", "approved")]


async def test_events_sent_is_idempotent_by_sid(w: World) -> None:
    item = {"sid": "SM" + "a" * 32, "to": w.number("good"), "category": "marketing",
            "sent_at": "2026-11-26T10:00:00Z", "tags": ["campaign-7"]}
    for expected in ({"stored": 1, "duplicates": 0}, {"stored": 0, "duplicates": 1}):
        async with w.client.post("/v1/events/sent", json=item, headers=AUTH) as resp:
            assert resp.status == 200 and await resp.json() == expected
    batch = [item, {**item, "sid": "SM" + "b" * 32}]
    async with w.client.post("/v1/events/sent", json=batch, headers=AUTH) as resp:
        assert await resp.json() == {"stored": 1, "duplicates": 1}
    rows = await w.events("type = 'message.sent'")
    assert len(rows) == 2
    assert rows[0]["occurred_at"].isoformat() == "2026-11-26T10:00:00+00:00"


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    ({"to": "4155550123", "body": "x"}, AUTH, 400, "E.164"),
    ({"to": "+1555", "body": "x"}, AUTH, 400, "not a valid phone number"),
    ({"to": "+14155550123", "body": "   "}, AUTH, 400, "`body` is required"),
    ({"to": "+14155550123", "body": "x" * 1601}, AUTH, 400, "limit is 1600"),
    ({"to": "+14155550123", "body": "x", "category": "spam"}, AUTH, 400, "`category`"),
    ({"to": "+14155550123", "body": "x"}, {}, 401, "API key"),
    ({"to": "+14155550123", "body": "x"}, {"Authorization": "Bearer nope"}, 401, "API key"),
])
async def test_bad_send_requests_are_clear_and_send_nothing(
        w: World, body: dict[str, Any], headers: dict[str, str], status: int,
        message: str) -> None:
    async with w.client.post("/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == status
        assert message in (await resp.json())["error"]
    assert w.sim.stats.created == 0
    assert await w.events() == []


async def test_events_sent_bad_item_stores_none_of_the_batch(w: World) -> None:
    batch = [{"sid": "SM" + "c" * 32, "to": w.number("good")},
             {"sid": "nope", "to": w.number("good")}]
    async with w.client.post("/v1/events/sent", json=batch, headers=AUTH) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith("item 1: `sid`")
    assert await w.events() == []


async def test_twilio_unreachable_is_502_and_stores_nothing(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    settings = Settings(database_url=db_url, twilio_account_sid=ACCOUNT,
                        twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number=OUR_NUMBER,
                        twilio_api_url=f"http://127.0.0.1:{free_port()}",
                        api_key=Secret(API_KEY), data_dir=tmp_path)
    async with TestClient(TestServer(create_app(settings))) as client:
        async with client.post("/v1/messages", json={"to": "+14155550123", "body": "hi"},
                               headers=AUTH) as resp:
            assert resp.status == 502
            assert "Twilio could not be reached" in (await resp.json())["error"]
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_simulator_callbacks_validate_with_request_validator() -> None:
    seen: list[bool] = []

    async def capture(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = str(request.url)
        seen.append(RequestValidator(TEST_TOKEN).validate(
            url, form, request.headers["X-Twilio-Signature"]))
        return web.Response()

    app = web.Application()
    app.router.add_post("/cb", capture)
    sim = TwilioSim(sim_config(duplicate_rate=0.0))
    async with TestServer(app) as server:
        await sim.start()
        try:
            for number in sim.numbers[:10]:
                sim.create_message({"To": number.e164, "From": OUR_NUMBER, "Body": "hi",
                                    "StatusCallback": str(server.make_url("/cb"))}, [])
            await sim.drain()
        finally:
            await sim.close()
    assert len(seen) >= 10 and all(seen)


def test_the_world_is_deterministic_and_realistic() -> None:
    import phonenumbers

    a, b = world.make_numbers(5, 200), world.make_numbers(5, 200)
    assert a == b and a != world.make_numbers(6, 200)
    assert len({n.country for n in a}) >= 5
    for n in a:
        parsed = phonenumbers.parse(n.e164, None)
        assert phonenumbers.is_valid_number(parsed)
        assert phonenumbers.region_code_for_number(parsed) == n.country
        assert n.carrier in {c[0] for c in world.CARRIERS[n.country]}


async def test_traffic_drives_the_whole_path(w: World) -> None:
    traffic = Traffic(w.sim, TrafficConfig(
        ingest_url=str(w.client.make_url("")).rstrip("/"), public_url=w.settings.public_url,
        api_key=API_KEY, our_number=OUR_NUMBER, rate=60, count=150, seed=4, verify=True))
    counts = await traffic.run()
    await w.sim.drain()
    assert counts["sent"] > 50
    assert not any(k.startswith(("http 5", "ingester unreachable")) for k in counts)
    types = {r["type"] for r in await w.events()}
    assert {"message.sent", "message.status", "message.inbound", "verification.started",
            "verification.checked"} <= types
    assert w.sim.stats.callbacks_failed == 0
    # Every message the simulator accepted and reported is known to smsledger (the inbound
    # ones, which it keeps too, as Twilio does, are not sends).
    sent = {r["message_sid"] for r in await w.events("type = 'message.sent'")}
    assert {sid for sid, m in w.sim.messages.items() if m["direction"] != "inbound" and (
            m["status"] != "failed" or m["error_code"] not in (21610, 21614))} <= sent | {
        sid for sid, m in w.sim.messages.items() if m["error_code"] in (21610, 21614)}
    await asyncio.sleep(0)


@pytest.mark.parametrize("bad", ["\u0000", "\ud800"])
async def test_unstorable_text_in_json_is_400_and_the_ingester_keeps_working(
        w: World, bad: str) -> None:
    """NUL and lone surrogates cannot be stored (jsonb, UTF-8): refused at the door, and the
    group commit goes on serving everyone else."""
    item = {"sid": "SM" + "d" * 32, "to": w.number("good"), "from": "x" + bad}
    body = json.dumps(item)          # ASCII escapes: \\u0000, \\ud800
    async with w.client.post("/v1/events/sent", data=body, headers={
            **AUTH, "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "cannot be stored" in (await resp.json())["error"]
    good = {**item, "from": "+15005550006"}
    async with w.client.post("/v1/events/sent", json=good, headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["stored"] == 1


async def test_consent_check_without_postgres_is_a_clear_503_and_sends_nothing(
        tmp_path: Path) -> None:
    """The opt-out check needs the event store; without it nothing may be sent (fail
    closed), and the answer is a clear 503, not a crash or a hang."""
    sim = TwilioSim(sim_config())
    async with TestServer(create_sim_app(sim)) as sim_server:
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
            twilio_account_sid=ACCOUNT, twilio_auth_token=Secret(TEST_TOKEN),
            twilio_phone_number=OUR_NUMBER, twilio_verify_service_sid=VERIFY_SID,
            twilio_api_url=str(sim_server.make_url("")).rstrip("/"), api_key=Secret(API_KEY),
            data_dir=tmp_path)
        async with TestClient(TestServer(create_app(settings))) as client:
            for path, body in [("/v1/messages", {"to": sim.numbers[0].e164, "body": "hi"}),
                               ("/v1/verify/start", {"to": sim.numbers[0].e164})]:
                async with client.post(path, json=body, headers=AUTH) as resp:
                    assert resp.status == 503, path
                    assert "opt-outs" in (await resp.json())["error"]
    assert sim.stats.created == 0 and not sim.verifications
