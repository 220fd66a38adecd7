"""The signed webhook path, end to end against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
from aiohttp.test_utils import TestClient

from sim.twilio import TwilioSim
from tests.conftest import PUBLIC_URL, post_signed, sign, status_form

Client = TestClient[object, object]


async def count(db: asyncpg.Connection, where: str = "true", *args: object) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM events WHERE {where}", *args))


async def test_status_callback_is_stored_with_every_field(ingest: Client,
                                                          db: asyncpg.Connection) -> None:
    form = status_form("SM" + "a" * 32, "undelivered", "30003", RawDlrDoneDate="2611261432",
                       SomethingTwilioAddedLater="x")
    status, body = await post_signed(ingest, "/twilio/status", form)
    assert (status, body) == (200, "")
    row = await db.fetchrow("SELECT * FROM events")
    assert row["type"] == "message.status"
    assert row["message_sid"] == "SM" + "a" * 32
    assert row["status"] == "undelivered"
    assert row["error_code"] == 30003
    assert row["phone"] == "+14155550123"
    assert row["source"] == "webhook"
    assert json.loads(row["payload"]) == form


async def test_duplicate_callback_answers_200_and_stores_one_row(ingest: Client,
                                                                 db: asyncpg.Connection) -> None:
    form = status_form("SM" + "b" * 32, "delivered")
    results = [await post_signed(ingest, "/twilio/status", form) for _ in range(3)]
    assert [r[0] for r in results] == [200, 200, 200]
    assert await count(db) == 1
    metrics = await (await ingest.get("/metrics")).text()
    assert "smsledger_events_duplicate_total 2" in metrics


async def test_out_of_order_and_unknown_statuses_are_all_stored(ingest: Client,
                                                                db: asyncpg.Connection) -> None:
    sid = "SM" + "c" * 32
    for status in ["delivered", "sent", "queued", "some_future_status"]:
        assert (await post_signed(ingest, "/twilio/status", status_form(sid, status)))[0] == 200
    stored = await db.fetch("SELECT status FROM events WHERE message_sid = $1 ORDER BY position",
                            sid)
    assert [r["status"] for r in stored] == ["delivered", "sent", "queued", "some_future_status"]


async def test_forged_missing_and_wrong_url_signatures_are_403(ingest: Client,
                                                               db: asyncpg.Connection) -> None:
    form = status_form("SM" + "d" * 32, "delivered")
    forged = {"X-Twilio-Signature": sign("/twilio/status", form, token="not-the-token")}
    wrong_url = {"X-Twilio-Signature": sign("/twilio/status", form,
                                            base="https://elsewhere.example.test")}
    other_path = {"X-Twilio-Signature": sign("/twilio/inbound", form)}
    tampered = dict(form, MessageStatus="failed")
    for headers, data in [({}, form), (forged, form), (wrong_url, form), (other_path, form),
                          ({"X-Twilio-Signature": sign("/twilio/status", form)}, tampered)]:
        async with ingest.post("/twilio/status", data=data, headers=headers) as resp:
            assert resp.status == 403, headers
            assert "error" in await resp.json()
    assert await count(db) == 0
    metrics = await (await ingest.get("/metrics")).text()
    assert 'smsledger_requests_rejected_total{reason="signature_invalid"} 4' in metrics
    assert 'smsledger_requests_rejected_total{reason="signature_missing"} 1' in metrics


async def test_signature_with_default_port_is_accepted(ingest: Client,
                                                       db: asyncpg.Connection) -> None:
    form = status_form("SM" + "e" * 32, "sent")
    headers = {"X-Twilio-Signature": sign("/twilio/status", form,
                                          base=PUBLIC_URL.replace(".test", ".test:443"))}
    async with ingest.post("/twilio/status", data=form, headers=headers) as resp:
        assert resp.status == 200
    assert await count(db) == 1


async def test_query_string_is_part_of_the_signed_url(ingest: Client,
                                                      db: asyncpg.Connection) -> None:
    form = status_form("SM" + "f" * 32, "sent")
    path = "/twilio/status?tenant=acme"
    status, _ = await post_signed(ingest, path, form)
    assert status == 200
    headers = {"X-Twilio-Signature": sign("/twilio/status", form)}
    async with ingest.post(path, data=form, headers=headers) as resp:
        assert resp.status == 403


async def test_alphanumeric_and_short_code_senders_are_valid(ingest: Client,
                                                             db: asyncpg.Connection) -> None:
    for i, sender in enumerate(["ACME", "12345"]):
        form = status_form(f"SM{i:032d}", "delivered", From=sender)
        assert (await post_signed(ingest, "/twilio/status", form))[0] == 200
        inbound = {"MessageSid": f"SM{i + 10:032d}", "From": sender, "To": "+15005550006",
                   "Body": "hello", "AccountSid": "AC" + "0" * 32}
        assert (await post_signed(ingest, "/twilio/inbound", inbound))[0] == 200
    assert await count(db) == 4


async def test_inbound_stop_start_help_become_contact_events(
        sim_ingest: tuple[TwilioSim, Client], db: asyncpg.Connection) -> None:
    sim, ingest = sim_ingest
    url, sign_url = str(ingest.make_url("/twilio/inbound")), PUBLIC_URL + "/twilio/inbound"
    bodies = [" stop ", "START", "help", "OPT OUT", "Revoke"]
    for body in bodies:
        assert await sim.send_inbound(url, "+14155550100", "+15005550006", body,
                                      sign_url) == 200
    rows = await db.fetch("SELECT type, payload->>'keyword' AS keyword FROM events "
                          "WHERE type LIKE 'contact.%' ORDER BY position")
    assert [(r["keyword"], r["type"]) for r in rows] == [
        ("STOP", "contact.opted_out"), ("START", "contact.opted_in"),
        ("HELP", "contact.help_requested"), ("REVOKE", "contact.opted_out")]
    assert await count(db, "type = 'message.inbound'") == 5


async def test_inbound_keywords_answer_twiml(ingest: Client) -> None:
    form = {"MessageSid": "SM" + "5" * 32, "AccountSid": "AC" + "0" * 32,
            "From": "+14155550100", "To": "+15005550006", "Body": "help"}
    status, text = await post_signed(ingest, "/twilio/inbound", form)
    assert status == 200
    assert text.startswith("<?xml") and "<Response" in text and "<Message" not in text


async def test_advanced_opt_out_type_wins_over_body(ingest: Client,
                                                    db: asyncpg.Connection) -> None:
    form = {"MessageSid": "SM" + "9" * 32, "AccountSid": "AC" + "0" * 32,
            "From": "+14155550100", "To": "+15005550006", "Body": "arrêtez",
            "OptOutType": "STOP", "MessagingServiceSid": "MG" + "1" * 32}
    assert (await post_signed(ingest, "/twilio/inbound", form))[0] == 200
    assert await count(db, "type = 'contact.opted_out' AND phone = '+14155550100'") == 1


async def test_bad_input_is_refused_and_stored_data_is_unharmed(ingest: Client,
                                                                db: asyncpg.Connection) -> None:
    good = status_form("SM" + "1" * 32, "delivered")
    assert (await post_signed(ingest, "/twilio/status", good))[0] == 200
    before = await db.fetch("SELECT * FROM events")

    async def raw(body: bytes, content_type: str, signed_params: dict[str, str] | None = None,
                  ) -> int:
        headers = {"Content-Type": content_type,
                   "X-Twilio-Signature": sign("/twilio/status", signed_params or {})}
        async with ingest.post("/twilio/status", data=body, headers=headers) as resp:
            if resp.status >= 400:
                assert "error" in await resp.json()
            return resp.status

    form_type = "application/x-www-form-urlencoded"
    assert await raw(b'{"MessageSid": "SM1"}', "application/json") == 415
    assert await raw(b"MessageSid=SM1", "text/plain") == 415
    assert await raw(b"Body=" + b"x" * 70_000, form_type) == 413
    assert await raw(b"MessageSid=SM1&MessageStatus=sent\x00", form_type) == 400
    assert await raw(b"MessageSid=SM1&MessageStatus=sent%00", form_type) == 400
    assert await raw(b"MessageSid=SM1&MessageStatus=\xff\xfe", form_type) == 400
    assert await raw(b"MessageSid=SM1&MessageStatus=%ff", form_type) == 400
    missing_status = {"MessageSid": "SM2"}
    assert await raw(b"MessageSid=SM2", form_type, missing_status) == 400
    missing_sid = {"MessageStatus": "sent"}
    assert await raw(b"MessageStatus=sent", form_type, missing_sid) == 400
    async with ingest.post("/twilio/inbound", data={"Body": "hi"},
                           headers={"X-Twilio-Signature": sign("/twilio/inbound",
                                                               {"Body": "hi"})}) as resp:
        assert resp.status == 400
    assert await db.fetch("SELECT * FROM events") == before


async def test_concurrent_requests_share_batches_and_all_are_durable(
        ingest: Client, db: asyncpg.Connection) -> None:
    forms = [status_form(f"SM{i:032d}", "delivered") for i in range(400)]
    results = await asyncio.gather(*(post_signed(ingest, "/twilio/status", f) for f in forms))
    assert all(status == 200 for status, _ in results)
    assert await count(db) == 400
    # Fewer transactions than events: requests were committed together.
    transactions = await db.fetchval("SELECT count(DISTINCT tx_id) FROM events")
    assert transactions < 400
    metrics = await (await ingest.get("/metrics")).text()
    assert "smsledger_commit_batch_events_count " in metrics
    assert "smsledger_events_appended_total{type=\"message.status\"} 400" in metrics


async def test_health_ready_and_metrics(ingest: Client) -> None:
    assert (await (await ingest.get("/healthz")).json()) == {"status": "ok"}
    ready = await ingest.get("/readyz")
    assert ready.status == 200 and (await ready.json())["database"] == "ok"
    text = await (await ingest.get("/metrics")).text()
    for name in ["smsledger_events_appended_total", "smsledger_events_duplicate_total",
                 "smsledger_requests_rejected_total", "smsledger_commit_batch_events_bucket",
                 "smsledger_ack_latency_seconds_bucket"]:
        assert name in text


async def test_a_body_that_arrives_in_pieces_is_read_whole(ingest: Client,
                                                           db: asyncpg.Connection) -> None:
    """Most webhooks arrive whole with their headers; one that trickles in (chunked, with
    pauses) is read to its end before the signature is checked; a Content-Type with a charset
    is the same form; a trickling body over the limit is still 413."""
    from urllib.parse import urlencode

    form = status_form("SM" + "5" * 32, "delivered")
    body = urlencode(form).encode()

    async def trickle(data: bytes, pieces: int = 4) -> AsyncIterator[bytes]:
        step = len(data) // pieces + 1
        for start in range(0, len(data), step):
            await asyncio.sleep(0.05)
            yield data[start:start + step]

    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
               "X-Twilio-Signature": sign("/twilio/status", form)}
    async with ingest.post("/twilio/status", data=trickle(body), headers=headers) as resp:
        assert resp.status == 200
    too_big = b"Body=" + b"x" * 70_000
    async with ingest.post("/twilio/status", data=trickle(too_big, 8), headers=headers) as resp:
        assert resp.status == 413
    assert [r[0] for r in await db.fetch("SELECT message_sid FROM events")] == ["SM" + "5" * 32]
