"""Opt-outs scoped as Twilio scopes them (issue 14, item 4): with SMSLEDGER_OPT_OUT_SCOPE=sender a
STOP to a Messaging Service's number refuses sends through that service only, a STOP to a plain
number refuses sends from that number only; with `account` (the default) a STOP refuses every
send. Through the real app, the real twilio client and the simulator's signed inbound webhook."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from schema import store
from schema.events import Event, EventType, Source, suppression, utc_now
from schema.settings import Secret, Settings
from sim.twilio import TwilioSim, create_sim_app
from smsledger.devdb import free_port
from tests.conftest import TEST_TOKEN
from tests.test_sending import ACCOUNT, API_KEY, AUTH, OUR_NUMBER, VERIFY_SID, sim_config

SERVICE_A = "MG" + "a" * 32
SERVICE_B = "MG" + "b" * 32
OTHER_NUMBER = "+15005550009"


@dataclasses.dataclass
class Scoped:
    sim: TwilioSim
    client: TestClient[Any, Any]
    settings: Settings
    db: asyncpg.Connection

    async def inbound(self, phone: str, body: str, to: str = OUR_NUMBER,
                      service: str | None = None) -> None:
        url = str(self.client.make_url("/twilio/inbound"))
        sign_url = self.settings.public_url + "/twilio/inbound"
        assert await self.sim.send_inbound(url, phone, to, body, sign_url, service) == 200

    async def send(self, phone: str, **sender: str) -> tuple[int, dict[str, Any]]:
        body = {"to": phone, "body": "Your order shipped", **sender}
        async with self.client.post("/v1/messages", json=body, headers=AUTH) as resp:
            return resp.status, await resp.json()


@pytest.fixture(params=["account", "sender"])
async def scoped(request: pytest.FixtureRequest, db_url: str, db: asyncpg.Connection,
                 tmp_path: Path) -> AsyncIterator[Scoped]:
    sim = TwilioSim(sim_config(duplicate_rate=0, reorder_rate=0))
    async with TestServer(create_sim_app(sim)) as sim_server:
        port = free_port()
        settings = Settings(
            database_url=db_url, twilio_account_sid=ACCOUNT,
            twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number=OUR_NUMBER,
            twilio_verify_service_sid=VERIFY_SID,
            twilio_api_url=str(sim_server.make_url("")).rstrip("/"),
            api_key=Secret(API_KEY), public_url=f"http://127.0.0.1:{port}", data_dir=tmp_path,
            opt_out_scope=request.param)
        async with TestClient(TestServer(create_app(settings), port=port)) as client:
            yield Scoped(sim, client, settings, db)


async def test_stop_on_service_a(scoped: Scoped) -> None:
    phone = scoped.sim.numbers_with("good")[0].e164
    await scoped.inbound(phone, "STOP", service=SERVICE_A)
    status_a, body_a = await scoped.send(phone, messaging_service_sid=SERVICE_A)
    status_b, body_b = await scoped.send(phone, messaging_service_sid=SERVICE_B)
    status_n, _ = await scoped.send(phone)   # the default sender, a plain number
    assert status_a == 409 and body_a["reason"] == "opted_out"
    refused = await scoped.db.fetch("SELECT payload FROM events WHERE type = 'message.refused' "
                                    "ORDER BY position")
    if scoped.settings.opt_out_scope == "sender":
        assert body_a["scope"] == f"messaging_service:{SERVICE_A}"
        assert f"messaging service {SERVICE_A}" in body_a["error"]
        assert (status_b, status_n) == (201, 201)
        assert body_b["status"] == "accepted"
        assert scoped.sim.stats.created == 2
        assert [json.loads(r["payload"])["scope"] for r in refused] == [
            f"messaging_service:{SERVICE_A}"]
    else:
        assert body_a["scope"] == "account"
        assert (status_b, status_n) == (409, 409) and body_b["scope"] == "account"
        assert scoped.sim.stats.created == 0
        assert len(refused) == 3
    # START on the service opts back in there (in both modes).
    await scoped.inbound(phone, "START", service=SERVICE_A)
    assert (await scoped.send(phone, messaging_service_sid=SERVICE_A))[0] == 201


async def test_stop_on_a_plain_number(scoped: Scoped) -> None:
    phone = scoped.sim.numbers_with("good")[1].e164
    await scoped.inbound(phone, "unsubscribe", to=OUR_NUMBER)
    status_ours, body = await scoped.send(phone, **{"from": OUR_NUMBER})
    status_other, _ = await scoped.send(phone, **{"from": OTHER_NUMBER})
    status_service, _ = await scoped.send(phone, messaging_service_sid=SERVICE_A)
    assert status_ours == 409 and body["detail"] == "UNSUBSCRIBE"
    if scoped.settings.opt_out_scope == "sender":
        assert body["scope"] == f"sender:{OUR_NUMBER}" and f"sender {OUR_NUMBER}" in body["error"]
        assert (status_other, status_service) == (201, 201)
    else:
        assert (status_other, status_service) == (409, 409)


async def test_suppression_and_verify_refuse_on_every_scope(scoped: Scoped) -> None:
    """A suppression (hygiene) is account-wide in both modes; Verify sends from Twilio's own
    senders, so in `sender` mode any opt-out of the person refuses it (the safe side)."""
    suppressed, stopped = (n.e164 for n in scoped.sim.numbers_with("good")[2:4])
    async with scoped.db.transaction():
        await store.append(scoped.db, [suppression(
            EventType.CONTACT_SUPPRESSED, phone=suppressed, reason="30005 unknown handset",
            source=Source.ANALYTICS, key_suffix="r1")])
    for sender in ({"from": OTHER_NUMBER}, {"messaging_service_sid": SERVICE_B}):
        status, body = await scoped.send(suppressed, **sender)
        assert status == 409 and body["reason"] == "suppressed" and body["scope"] == "account"
    await scoped.inbound(stopped, "STOP", service=SERVICE_A)
    async with scoped.client.post("/v1/verify/start", json={"to": stopped},
                                  headers=AUTH) as resp:
        assert resp.status == 409
    assert scoped.sim.stats.created == 0 and not scoped.sim.inbox.get(stopped)


async def test_old_opt_outs_without_a_scope_stay_account_wide(scoped: Scoped) -> None:
    """An opt-out whose payload names neither service nor number (older events, other
    channels) refuses every send in `sender` mode too."""
    phone = scoped.sim.numbers_with("good")[4].e164
    now = utc_now()
    async with scoped.db.transaction():
        await store.append(scoped.db, [Event(
            type=EventType.CONTACT_OPTED_OUT, idempotency_key="contact.opted_out:legacy",
            source=Source.WEBHOOK, occurred_at=now, received_at=now,
            payload={"keyword": "STOP"}, phone=phone)])
    status, body = await scoped.send(phone, messaging_service_sid=SERVICE_B)
    assert status == 409 and body["scope"] == "account"
