"""Reconciliation recovers what callbacks never brought; backfill imports history, resumably
and idempotently, from the Messages API or Bulk Export files."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from analytics.reconcile import backfill_api, backfill_files, reconcile
from schema import store
from schema.events import InvalidEvent, Source, message_sent
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from tests.conftest import TEST_TOKEN, until
from twilio_api.client import make_client

ACCOUNT = "AC" + "5" * 32
TERMINAL = ("delivered", "undelivered", "failed")


@dataclasses.dataclass
class Twilio:
    sim: TwilioSim
    client: Any


@pytest.fixture
async def twilio() -> AsyncIterator[Twilio]:
    sim = TwilioSim(SimConfig(account_sid=ACCOUNT, auth_token=TEST_TOKEN, seed=5, numbers=60,
                              time_scale=0.01, history_days=5))
    async with TestServer(create_sim_app(sim)) as server:
        client, http = make_client(Settings(
            twilio_account_sid=ACCOUNT, twilio_auth_token=Secret(TEST_TOKEN),
            twilio_api_url=str(server.make_url("")).rstrip("/")))
        try:
            yield Twilio(sim, client)
        finally:
            await http.close()


async def test_reconcile_recovers_lost_callbacks_and_unknown_failures(
        twilio: Twilio, db: asyncpg.Connection) -> None:
    twilio.sim.messages.clear()                      # no history for this test
    good = twilio.sim.numbers_with("good")
    # A message whose callbacks were all lost: Twilio knows it was delivered, we don't.
    status, lost = twilio.sim.create_message({"To": good[0].e164, "From": "+15005550006",
                                              "Body": "hi"}, [])
    assert status == 201
    # A create-time failure stored as a Message resource (recipient had opted out).
    twilio.sim.opted_out.add(good[1].e164)
    assert twilio.sim.create_message({"To": good[1].e164, "From": "+15005550006",
                                      "Body": "hi"}, [])[0] == 400
    await twilio.sim.drain()
    await until(lambda: twilio.sim.messages[lost["sid"]]["status"] in TERMINAL,
                what="the resource reaches its final status")
    sent_at = datetime.now(UTC) - timedelta(minutes=30)
    async with db.transaction():
        await store.append(db, [message_sent(
            sid=lost["sid"], to=good[0].e164, from_="+15005550006",
            messaging_service_sid=None, category="otp", tags=[], segments=1, media_count=0,
            status="queued", requested_at=sent_at, source=Source.API)])
    result = await reconcile(twilio.client, db, after=timedelta(minutes=10))
    assert (result.checked, result.unknown_found) == (1, 1)
    rows = await db.fetch("SELECT message_sid, type, status, error_code, source FROM events "
                          "WHERE source = 'reconcile' ORDER BY position")
    final = twilio.sim.messages[lost["sid"]]["status"]
    assert (lost["sid"], "message.status", final, None, "reconcile") in [tuple(r) for r in rows]
    failed = [tuple(r)[1:] for r in rows if r["message_sid"] != lost["sid"]]
    assert ("message.status", "failed", 21610, "reconcile") in failed
    # Run again: everything is settled and known; nothing new.
    again = await reconcile(twilio.client, db, after=timedelta(minutes=10))
    assert (again.checked, again.unknown_found, again.events) == (0, 0, 0)


async def test_backfill_pages_resumes_and_is_idempotent(twilio: Twilio, db: asyncpg.Connection,
                                                        tmp_path: Path) -> None:
    history = len(twilio.sim.messages)
    assert history > 100
    since = datetime.now(UTC) - timedelta(days=6)
    checkpoint = tmp_path / "backfill.json"
    # Interrupted after the first page: the checkpoint names the second.
    first = await twilio.client.messages.page_async(date_sent_after=since, page_size=50)
    checkpoint.write_text(json.dumps({"next_page_url": first.next_page_url}))
    resumed = await backfill_api(twilio.client, db, since, None, checkpoint, page_size=50)
    assert resumed.messages == history - 50
    assert not checkpoint.exists()
    full = await backfill_api(twilio.client, db, since, None, checkpoint, page_size=50)
    assert full.messages == history and full.pages == -(-history // 50)
    sids = await db.fetchval("SELECT count(DISTINCT message_sid) FROM events "
                             "WHERE source = 'backfill'")
    assert sids == history
    again = await backfill_api(twilio.client, db, since, None, checkpoint, page_size=50)
    assert again.messages == history and again.events == 0
    # Twilio's times, not ours: the history lies in the past days.
    oldest = await db.fetchval("SELECT min(occurred_at) FROM events WHERE source = 'backfill'")
    assert oldest < datetime.now(UTC) - timedelta(days=3)


async def test_backfill_bulk_export_files(db: asyncpg.Connection, tmp_path: Path) -> None:
    lines = [{"sid": f"SM{i:032x}", "status": "undelivered" if i % 2 else "delivered",
              "error_code": 30003 if i % 2 else None, "to": "+14155550123",
              "from": "+15005550006", "direction": "outbound-api", "num_segments": "1",
              "date_created": "2026-10-01T10:00:00Z", "date_sent": "2026-10-01T10:00:01Z",
              "date_updated": "2026-10-01T10:00:05Z"} for i in range(4)]
    day = tmp_path / "2026-10-01.json.gz"
    with gzip.open(day, "wt") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")
    result = await backfill_files(db, [day])
    assert (result.messages, result.events) == (4, 8)
    rows = await db.fetch("SELECT status, error_code, occurred_at FROM events "
                          "WHERE type = 'message.status' ORDER BY message_sid")
    assert [(r["status"], r["error_code"]) for r in rows] == [
        ("delivered", None), ("undelivered", 30003)] * 2
    assert rows[0]["occurred_at"] == datetime(2026, 10, 1, 10, 0, 5, tzinfo=UTC)
    assert (await backfill_files(db, [day])).events == 0
    bad = tmp_path / "bad.json.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({**lines[0], "sid": "SM" + "9" * 32}) + "\n{not json\n")
    with pytest.raises(InvalidEvent, match="bad.json.gz line 2"):
        await backfill_files(db, [bad])


def test_backfill_cli_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from smsledger.cli import main
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/x")
    assert main(["backfill"]) == 2
    assert "give --since DATE" in capsys.readouterr().err
    assert main(["backfill", str(tmp_path / "missing.json.gz")]) == 2
    assert "no such file" in capsys.readouterr().err


async def test_cli_tells_a_refusal_from_an_unreachable_twilio(
        twilio: Twilio, db_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from smsledger.cli import main
    base = twilio.client.http_client._base
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("SMSLEDGER_TWILIO_API_URL", base)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token")
    assert await asyncio.to_thread(main, ["reconcile"]) == 2
    err = capsys.readouterr().err
    assert "Twilio refused the request: HTTP 401" in err and "TWILIO_AUTH_TOKEN" in err
    assert "wrong-token" not in err
    monkeypatch.setenv("SMSLEDGER_TWILIO_API_URL", "http://127.0.0.1:9")
    assert await asyncio.to_thread(main, ["reconcile"]) == 2
    assert "Twilio could not be reached" in capsys.readouterr().err


async def test_cli_reconcile_waits_smsledger_reconcile_after_s(
        twilio: Twilio, db_url: str, db: asyncpg.Connection,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`reconcile` without --after-minutes waits SMSLEDGER_RECONCILE_AFTER_S; the flag wins."""
    import asyncio

    from smsledger.cli import main
    twilio.sim.messages.clear()
    good = twilio.sim.numbers_with("good")
    status, lost = twilio.sim.create_message({"To": good[0].e164, "From": "+15005550006",
                                              "Body": "hi"}, [])
    assert status == 201
    await twilio.sim.drain()
    async with db.transaction():
        await store.append(db, [message_sent(
            sid=lost["sid"], to=good[0].e164, from_="+15005550006",
            messaging_service_sid=None, category="otp", tags=[], segments=1, media_count=0,
            status="queued", requested_at=datetime.now(UTC) - timedelta(minutes=5),
            source=Source.API)])
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("SMSLEDGER_TWILIO_API_URL", twilio.client.http_client._base)
    monkeypatch.setenv("SMSLEDGER_RECONCILE_AFTER_S", "60")
    assert await asyncio.to_thread(main, ["reconcile", "--after-minutes", "10"]) == 0
    assert "reconcile: 0 unsettled messages checked" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["reconcile"]) == 0
    assert "reconcile: 1 unsettled messages checked" in capsys.readouterr().out
