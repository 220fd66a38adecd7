"""OTP conversion feedback (issue 14, item 5): OTP sends ask Twilio for feedback, and
/v1/otp/confirm posts Message Feedback `outcome=confirmed` through the real twilio client to the
simulator's Feedback resource exactly once per confirmation, retries and races included."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from analytics import queries
from ingest.app import create_app
from schema.settings import Secret, Settings
from sim.twilio import TwilioSim, create_sim_app
from smsledger.devdb import free_port
from tests.conftest import TEST_TOKEN
from tests.factory import rollup
from tests.test_sending import ACCOUNT, API_KEY, AUTH, OUR_NUMBER, VERIFY_SID, sim_config


@dataclasses.dataclass
class Otp:
    sim: TwilioSim
    client: TestClient[Any, Any]
    db: asyncpg.Connection
    db_url: str

    async def send(self, category: str) -> str:
        phone = self.sim.numbers_with("good")[0].e164
        async with self.client.post("/v1/messages", headers=AUTH, json={
                "to": phone, "body": "Your code is 482913", "category": category}) as resp:
            assert resp.status == 201
            return str((await resp.json())["sid"])

    async def confirm(self, sid: Any, headers: dict[str, str] | None = None,
                      ) -> tuple[int, dict[str, Any]]:
        async with self.client.post("/v1/otp/confirm", json={"sid": sid},
                                    headers=AUTH if headers is None else headers) as resp:
            return resp.status, await resp.json()

    async def confirmed(self) -> list[asyncpg.Record]:
        return list(await self.db.fetch(
            "SELECT message_sid, phone, status, source FROM events "
            "WHERE type = 'otp.confirmed' ORDER BY position"))


@pytest.fixture
async def otp(db_url: str, db: asyncpg.Connection, tmp_path: Path) -> AsyncIterator[Otp]:
    sim = TwilioSim(sim_config())
    async with TestServer(create_sim_app(sim)) as sim_server:
        port = free_port()
        settings = Settings(
            database_url=db_url, twilio_account_sid=ACCOUNT,
            twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number=OUR_NUMBER,
            twilio_verify_service_sid=VERIFY_SID,
            twilio_api_url=str(sim_server.make_url("")).rstrip("/"),
            api_key=Secret(API_KEY), public_url=f"http://127.0.0.1:{port}", data_dir=tmp_path)
        async with TestClient(TestServer(create_app(settings), port=port)) as client:
            yield Otp(sim, client, db, db_url)


async def test_otp_sends_ask_for_feedback_and_others_do_not(otp: Otp) -> None:
    code_sid = await otp.send("otp")
    notice_sid = await otp.send("transactional")
    assert code_sid in otp.sim.feedback_requested
    assert notice_sid not in otp.sim.feedback_requested


async def test_feedback_is_posted_once_per_confirmation(otp: Otp) -> None:
    sid = await otp.send("otp")
    status, body = await otp.confirm(sid)
    assert (status, body) == (201, {"sid": sid, "outcome": "confirmed",
                                    "already_confirmed": False})
    assert otp.sim.feedback == {sid: ["confirmed"]}
    # The app retries (a lost answer, a double tap): Twilio is not called again.
    for _ in range(3):
        status, body = await otp.confirm(sid)
        assert status == 200 and body["already_confirmed"] is True
    assert otp.sim.feedback == {sid: ["confirmed"]}
    rows = await otp.confirmed()
    phone = otp.sim.numbers_with("good")[0].e164
    assert [(r["message_sid"], r["phone"], r["status"], r["source"]) for r in rows] == [
        (sid, phone, "confirmed", "api")]


async def test_racing_confirmations_post_once(otp: Otp) -> None:
    sid = await otp.send("otp")
    answers = await asyncio.gather(*(otp.confirm(sid) for _ in range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert otp.sim.feedback == {sid: ["confirmed"]}
    assert len(await otp.confirmed()) == 1


async def test_conversion_is_known_from_the_log(otp: Otp, tmp_path: Path) -> None:
    """Two OTPs sent, one confirmed, one notice: the rollup's OTP conversion is 1 of 2."""
    first, _, _ = await otp.send("otp"), await otp.send("otp"), await otp.send("transactional")
    assert (await otp.confirm(first))[0] == 201
    duck, _ = await rollup(otp.db_url, tmp_path / "otp.duckdb")
    frame = queries.otp_conversion(duck)
    assert frame[["sent", "confirmed"]].values.tolist() == [[2, 1]]
    assert frame["conversion"].tolist() == [0.5]


async def test_confirm_refuses_what_it_cannot_confirm(otp: Otp) -> None:
    notice = await otp.send("transactional")
    unknown = "SM" + "0" * 32
    assert (await otp.confirm(unknown))[0] == 404
    status, body = await otp.confirm(notice)
    assert status == 409 and "not otp" in body["error"]
    for bad in ("SM123", 42, None, "XX" + "0" * 32):
        assert (await otp.confirm(bad))[0] == 400
    assert (await otp.confirm(notice, headers={}))[0] == 401
    assert otp.sim.feedback == {} and await otp.confirmed() == []
