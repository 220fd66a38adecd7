"""The Event Streams sink: CloudEvents with a bodySHA256 signature, deduped against retries
and against the classic callbacks carrying the same fact."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from twilio.request_validator import RequestValidator

from tests.conftest import PUBLIC_URL, TEST_TOKEN, post_signed, status_form

Client = TestClient[object, object]
SID = "SM" + "e" * 32


def cloud(n: int, kind: str, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"CE{n:032x}", "source": "/2010-04-01/Accounts/AC/…",
            "type": f"com.twilio.messaging.{kind}", "time": f"2026-11-26T10:00:0{n}Z",
            "dataschema": "https://events-schemas.twilio.com/Messaging.MessageStatus/2",
            "data": {"messageSid": SID, "accountSid": "AC" + "0" * 32, "to": "+14155550123",
                     "from": "+15005550006", **data}}


async def post_events(client: Client, events: Any, *, tamper: bool = False,
                      no_hash: bool = False) -> int:
    body = json.dumps(events).encode()
    digest = hashlib.sha256(body).hexdigest()
    path = "/twilio/events" if no_hash else f"/twilio/events?bodySHA256={digest}"
    signature = RequestValidator(TEST_TOKEN).compute_signature(PUBLIC_URL + path, {})
    if tamper:
        body = body.replace(b"delivered", b"undelivered")
    async with client.post(path, data=body, headers={
            "Content-Type": "application/json", "X-Twilio-Signature": signature}) as resp:
        return resp.status


async def test_cloudevents_become_events_once(ingest: Client, db: asyncpg.Connection) -> None:
    batch = [cloud(1, "message.sent", messageStatus="SENT"),
             cloud(2, "message.delivered", messageStatus="DELIVERED", rawDlrDoneDate="2611261000"),
             cloud(3, "inbound-message.received", messageSid="SM" + "f" * 32,
                   **{"from": "+14155550199", "to": "+15005550006", "body": "STOP"}),
             {"specversion": "1.0", "id": "CE-x", "type": "com.twilio.voice.something",
              "data": {}}]
    assert await post_events(ingest, batch) == 200
    assert await post_events(ingest, batch) == 200          # Event Streams retries
    # The same "delivered" fact by classic callback: already stored.
    assert (await post_signed(ingest, "/twilio/status", status_form(SID, "delivered")))[0] == 200
    rows = await db.fetch("SELECT type, status, source, occurred_at FROM events "
                          "ORDER BY position")
    assert [(r["type"], r["status"], r["source"]) for r in rows] == [
        ("message.status", "sent", "event-stream"),
        ("message.status", "delivered", "event-stream"),
        ("message.inbound", "received", "event-stream"),
        ("contact.opted_out", None, "event-stream")]
    assert rows[1]["occurred_at"].isoformat() == "2026-11-26T10:00:02+00:00"
    payload = json.loads(await db.fetchval("SELECT payload FROM events WHERE status = 'sent'"))
    assert payload["cloudevent_id"] == f"CE{1:032x}"


async def test_event_stream_signature_and_bad_input(ingest: Client,
                                                    db: asyncpg.Connection) -> None:
    good = [cloud(1, "message.delivered", messageStatus="DELIVERED")]
    assert await post_events(ingest, good, tamper=True) == 403   # body changed after signing
    assert await post_events(ingest, good, no_hash=True) == 403  # no bodySHA256: not a 500
    async with ingest.post("/twilio/events?bodySHA256=00", data=b"[]",
                           headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 403                                # no signature
    assert await post_events(ingest, [{"id": "x"}]) == 400
    assert await post_events(ingest, [cloud(1, "message.sent", messageSid="")]) == 400
    assert await post_events(ingest, ["not an object"]) == 400
    # NaN and Infinity are not JSON (jsonb cannot hold them): refused at the door, not
    # stored as something else.
    assert await post_events(ingest, [cloud(1, "message.sent", price=float("nan"))]) == 400
    assert await post_events(ingest, [cloud(1, "message.sent", price=float("-inf"))]) == 400
    assert await db.fetchval("SELECT count(*) FROM events") == 0
