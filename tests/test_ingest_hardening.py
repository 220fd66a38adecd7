"""Issue 15's ingest-side findings, each reproduced as the attacker did it, asserting what holds
now: the form parser's cost, strict shapes, consent replays, secrets in logs, odd input, slow
bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.reconcile import reconcile
from ingest.app import create_app
from ingest.forms import MAX_FORM_FIELDS, BadRequest, parse_form
from ingest.webhooks import SLOW_READERS
from schema import store
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app, rfc2822
from smsledger.devdb import free_port
from tests import factory
from tests.conftest import PUBLIC_URL, TEST_TOKEN, post_signed, sign, status_form
from twilio_api.client import make_client

Client = TestClient[object, object]


# Finding 1: a body of many repeated fields cost quadratic CPU before the signature check.

async def test_a_body_of_many_fields_is_refused_before_the_signature(
        ingest: Client, db: asyncpg.Connection) -> None:
    attack = b"&".join([b"a"] * 32767)   # the probe's 64 KB body
    async with ingest.post("/twilio/status", data=attack,
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "X-Twilio-Signature": "forged"}) as resp:
        assert resp.status == 400
        assert "more than 256 fields" in (await resp.json())["error"]
    async with ingest.get("/metrics") as resp:
        assert 'reason="too_many_fields"' in await resp.text()
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_an_mms_with_ten_media_is_well_within_the_cap(
        ingest: Client, db: asyncpg.Connection) -> None:
    sid = "MM" + "a" * 32
    form = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": "AC" + "0" * 32,
            "MessagingServiceSid": "MG" + "0" * 32, "From": "+14155550123",
            "To": "+15005550006", "Body": "pictures", "NumMedia": "10", "NumSegments": "1",
            "SmsStatus": "received", "ApiVersion": "2010-04-01",
            **{k: "" for k in ("FromCity", "FromState", "FromZip", "FromCountry", "ToCity",
                               "ToState", "ToZip", "ToCountry")}}
    for i in range(10):
        form[f"MediaUrl{i}"] = f"https://api.twilio.com/2010-04-01/Accounts/AC/Media/ME{i}"
        form[f"MediaContentType{i}"] = "image/jpeg"
    assert len(form) < MAX_FORM_FIELDS / 4
    status, _ = await post_signed(ingest, "/twilio/inbound", form)
    assert status == 200
    assert await db.fetchval("SELECT count(*) FROM events") == 1


def test_the_field_cap_counts_empty_fields() -> None:
    assert parse_form(b"&" * 9, max_fields=10) == {}
    try:
        parse_form(b"&" * 10, max_fields=10)
    except BadRequest as exc:
        assert (exc.status, exc.reason) == (400, "too_many_fields")
    else:
        raise AssertionError("10 separators (11 fields) passed a cap of 10")


_names = st.sampled_from(["a", "b", "MediaUrl0", "é", "a b", "x=y", "&", "%", "+"])
_values = st.text(alphabet=st.sampled_from(list("ab +&=%é\u00ff/:")), max_size=6)


@settings(max_examples=500, deadline=None)
@given(pairs=st.lists(st.tuples(_names, _values), max_size=300))
def test_parse_form_is_parse_qsl_grouped_by_name(pairs: list[tuple[str, str]]) -> None:
    """Any encoded form, with names repeated many times: ``parse_form`` holds what
    ``parse_qsl`` reads, each name's values in order, a single value as itself; above the cap,
    the refusal."""
    body = urlencode(pairs)
    expected: Any = {}
    for name, value in parse_qsl(body, keep_blank_values=True, errors="strict"):
        expected.setdefault(name, []).append(value)
    expected = {n: v[0] if len(v) == 1 else v for n, v in expected.items()}
    if len(pairs) > MAX_FORM_FIELDS:
        expected = "too_many_fields"
    try:
        got: Any = parse_form(body.encode())
    except BadRequest as exc:
        got = exc.reason
    assert got == expected




# Finding 2: a signed webhook replayed with a name/value boundary moved.

def _shifted(form: dict[str, str], name: str, into: str) -> dict[str, str]:
    """``form`` with ``into``'s name and value glued onto ``name``'s value: Twilio's signed
    string (``name1 value1 name2 value2 ...`` sorted, no separators) is unchanged when ``into``
    sorts right after ``name``."""
    shifted = {k: v for k, v in form.items() if k != into}
    shifted[name] = form[name] + into + form[into]
    return shifted


async def test_a_replay_with_a_shifted_boundary_is_refused(
        ingest: Client, db: asyncpg.Connection) -> None:
    sid = "SM" + "1" * 32
    stop = {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "Body": "STOP",
            "From": "+14155550100", "MessageSid": sid, "NumMedia": "0", "SmsSid": sid,
            "To": "+15005550006"}
    assert (await post_signed(ingest, "/twilio/inbound", stop))[0] == 200
    # The probe's replay: MessageSid=<sid>NumMedia0, NumMedia gone. The signature still holds.
    replay = _shifted(stop, "MessageSid", "NumMedia")
    signature = sign("/twilio/inbound", stop)
    assert signature == sign("/twilio/inbound", replay)
    async with ingest.post("/twilio/inbound", data=replay,
                           headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 400
        assert "MessageSid must be a message SID" in (await resp.json())["error"]
    # The same trick on a status callback stored "undeliveredsmssidsm..." as a status.
    status = status_form("SM" + "2" * 32, "undelivered", "30003")
    assert (await post_signed(ingest, "/twilio/status", status))[0] == 200
    bogus = _shifted(status, "MessageStatus", "SmsSid")
    signature = sign("/twilio/status", status)
    assert signature == sign("/twilio/status", bogus)
    async with ingest.post("/twilio/status", data=bogus,
                           headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 400
    assert await db.fetchval("SELECT count(*) FROM events") == 3   # inbound, opt-out, status


@pytest.mark.parametrize(("field", "value"), [
    ("MessageSid", "SM1"), ("MessageSid", "SM" + "A" * 32), ("MessageSid", "XX" + "a" * 32),
    ("SmsSid", "SM" + "b" * 32),                     # disagrees with MessageSid
    ("AccountSid", "AC" + "1" * 32),                 # not the configured account
    ("AccountSid", "AC123"), ("MessageStatus", "Delivered"), ("MessageStatus", "sent!"),
    ("ErrorCode", "3000x"), ("ErrorCode", ""), ("To", "4155550123"), ("From", "+0123"),
    ("From", "ACME CORP LTD"), ("ApiVersion", "v1")])
async def test_malformed_twilio_fields_are_refused_and_nothing_stored(
        ingest: Client, db: asyncpg.Connection, field: str, value: str) -> None:
    form = dict(status_form("SM" + "a" * 32, "delivered"), **{field: value})
    status, text = await post_signed(ingest, "/twilio/status", form)
    assert status == 400, text
    assert field in text
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_real_shapes_pass(ingest: Client, db: asyncpg.Connection) -> None:
    for i, (sender, recipient) in enumerate([("ACME", "+14155550123"), ("12345", "+447700900123"),
                                             ("whatsapp:+15005550006", "whatsapp:+14155550123")]):
        form = status_form(f"MM{i:032x}", "partially_delivered", "30008", From=sender,
                           To=recipient)
        assert (await post_signed(ingest, "/twilio/status", form))[0] == 200
    assert await db.fetchval("SELECT count(*) FROM events") == 3


async def test_a_required_field_missing_is_refused(ingest: Client,
                                                   db: asyncpg.Connection) -> None:
    for missing in ("AccountSid", "From", "To"):
        form = status_form("SM" + "a" * 32, "delivered")
        del form[missing]
        status, text = await post_signed(ingest, "/twilio/status", form)
        assert status == 400 and missing in text
    assert await db.fetchval("SELECT count(*) FROM events") == 0


# Finding 2, consent: a change applies when it is newer and Twilio confirms the message.

INBOUND = "/twilio/inbound"


async def consent_rows(db: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT type, source FROM events WHERE type LIKE 'contact.%' "
                          "ORDER BY position")
    return [(r["type"], r["source"]) for r in rows]


async def test_a_consent_change_is_confirmed_with_twilio(
        sim_ingest: tuple[TwilioSim, Client], db: asyncpg.Connection) -> None:
    sim, ingest = sim_ingest
    url = str(ingest.make_url(INBOUND))
    assert await sim.send_inbound(url, "+14155550100", "+15005550006", "STOP",
                                  PUBLIC_URL + INBOUND) == 200
    [(sid, occurred)] = [(r["message_sid"], r["occurred_at"]) for r in await db.fetch(
        "SELECT message_sid, occurred_at FROM events WHERE type = 'contact.opted_out'")]
    # The change's time is Twilio's (date_sent, whole seconds), not the webhook's arrival.
    assert occurred.microsecond == 0
    # A signed form for a message Twilio knows, with another body: refused, nothing stored.
    hello = [m for m in sim.messages.values() if m["sid"] == sid][0]
    hello_sid = "SM" + "7" * 32
    sim.messages[hello_sid] = dict(hello, sid=hello_sid, body="hello")
    forged = {"MessageSid": hello_sid, "AccountSid": "AC" + "0" * 32, "From": "+14155550100",
              "To": "+15005550006", "Body": "START"}
    status, text = await post_signed(ingest, INBOUND, forged)
    assert status == 400 and "does not match this webhook's Body" in text
    # A message Twilio has never seen: refused.
    status, text = await post_signed(ingest, INBOUND, dict(forged, MessageSid="SM" + "8" * 32))
    assert status == 400 and "Twilio has no message" in text
    assert await consent_rows(db) == [("contact.opted_out", "webhook")]
    assert await db.fetchval("SELECT count(*) FROM events") == 2


async def test_a_consent_change_older_than_the_current_state_is_not_applied(
        sim_ingest: tuple[TwilioSim, Client], db: asyncpg.Connection) -> None:
    sim, ingest = sim_ingest
    phone = "+14155550101"
    later = datetime.now(UTC) + timedelta(hours=1)
    await factory.append(db, factory.inbound(1, phone, "STOP", later))
    assert await sim.send_inbound(str(ingest.make_url(INBOUND)), phone, "+15005550006",
                                  "START", PUBLIC_URL + INBOUND) == 200
    assert await consent_rows(db) == [("contact.opted_out", "webhook")]
    assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'message.inbound'") == 2


async def test_twilio_unreachable_applies_a_stop_and_defers_a_start_to_reconcile(
        settings: Settings, db: asyncpg.Connection) -> None:
    """Twilio cannot confirm: the STOP is applied (a user who texted STOP is never texted),
    the START waits, stored as a message, until reconciliation confirms it."""
    sim = TwilioSim(SimConfig(account_sid=settings.twilio_account_sid, auth_token=TEST_TOKEN,
                              seed=5, numbers=50, time_scale=0.01))
    async with TestServer(create_sim_app(sim)) as sim_server, \
            TestClient(TestServer(create_app(settings))) as ingest:   # Twilio: a closed port
        url, phone = str(ingest.make_url(INBOUND)), "+14155550102"
        assert await sim.send_inbound(url, phone, "+15005550006", "STOP",
                                      PUBLIC_URL + INBOUND) == 200
        assert await consent_rows(db) == [("contact.opted_out", "webhook")]
        assert await sim.send_inbound(url, phone, "+15005550006", "START",
                                      PUBLIC_URL + INBOUND) == 200
        # Twilio's date_sent has whole seconds: the START's is set past the STOP's arrival.
        [start] = [m for m in sim.messages.values() if m["body"] == "START"]
        start["date_sent"] = rfc2822(datetime.now(UTC) + timedelta(seconds=2))
        assert await consent_rows(db) == [("contact.opted_out", "webhook")]
        assert await db.fetchval("SELECT count(*) FROM events "
                                 "WHERE type = 'message.inbound'") == 2
        assert await store.send_block(db, phone) is not None
        client, http = make_client(dataclasses.replace(
            settings, twilio_api_url=str(sim_server.make_url("")).rstrip("/")))
        try:
            await reconcile(client, db, after=timedelta(minutes=10))
        finally:
            await http.close()
    assert await consent_rows(db) == [("contact.opted_out", "webhook"),
                                      ("contact.opted_in", "reconcile")]
    assert await store.send_block(db, phone) is None


# Finding 7: odd input is a clear 4xx, nothing stored, no traceback at ERROR.

API_KEY = "hardening-test-api-key-0123456789"


async def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """``request`` as bytes on a socket of its own (aiohttp's client would normalise it):
    the status and the answer's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                body = await asyncio.wait_for(reader.readexactly(int(line.split(b":")[1])), 10)
        return int(head.split(b" ", 2)[1]), head + body
    finally:
        writer.close()


def http(method: str, target: str, headers: dict[str, bytes | str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1",
             b"Connection: close", f"Content-Length: {len(body)}".encode()]
    lines += [name.encode() + b": " + (v if isinstance(v, bytes) else v.encode())
              for name, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def signed_json(path: str, body: bytes) -> tuple[str, dict[str, bytes | str]]:
    target = f"{path}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    return target, {"Content-Type": "application/json",
                    "X-Twilio-Signature": sign(target, {})}


@pytest.fixture
async def odd_ingest(settings: Settings) -> AsyncIterator[Client]:
    """An ingester with the /v1 API on and forwarded headers trusted."""
    odd = dataclasses.replace(settings, api_key=Secret(API_KEY), trust_forwarded=True)
    async with TestClient(TestServer(create_app(odd))) as client:
        yield client


async def test_odd_input_is_a_clear_4xx_and_nothing_is_stored(
        odd_ingest: Client, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = odd_ingest.port
    assert port is not None
    form = status_form("SM" + "3" * 32, "delivered")
    body = urlencode(form).encode()
    good = sign("/twilio/status", form)
    bearer = f"Bearer {API_KEY}"
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    json_type = {"Content-Type": "application/json", "Authorization": bearer}
    too_deep_cloud = b'[{"id": "EZ1", "type": "x", "data": ' + nested(5000) + b"}]"
    deep_target, deep_headers = signed_json("/twilio/events", too_deep_cloud)
    late = json.dumps([{"id": "EZ2", "type": "com.twilio.messaging.message.delivered",
                        "time": "9999-12-31T23:59:59-01:00",
                        "data": {"messageSid": "SM" + "4" * 32, "to": "+14155550123"}}]).encode()
    late_target, late_headers = signed_json("/twilio/events", late)

    def sent(when: str) -> bytes:
        return json.dumps({"sid": "SM" + "5" * 32, "to": "+14155550123",
                           "sent_at": when}).encode()

    cases = {
        "0xFF in X-Twilio-Signature": http("POST", "/twilio/status", {
            **form_type, "X-Twilio-Signature": b"\xff" + good.encode()}, body),
        "0xFF in Authorization": http("POST", "/v1/messages", {
            **json_type, "Authorization": b"Bearer \xff" + API_KEY.encode()},
            b'{"to": "+14155550123", "body": "hi"}'),
        "absolute-form target": http("POST", "http://x/twilio/status", {
            **form_type, "X-Twilio-Signature": good}, body),
        "JSON nested 5,000 levels (signed)": http("POST", deep_target, deep_headers,
                                                  too_deep_cloud),
        "JSON nested 5,000 levels (/v1)": http("POST", "/v1/events/sent", json_type,
                                               nested(5000)),
        "JSON nested 300 levels (/v1)": http("POST", "/v1/events/sent", json_type,
                                             b'{"sid": ' + nested(300) + b"}"),
        "sent_at 9999-12-31T23:59:59-14:00": http("POST", "/v1/events/sent", json_type,
                                                  sent("9999-12-31T23:59:59-14:00")),
        "sent_at 0001-01-01T00:00:00+14:00": http("POST", "/v1/events/sent", json_type,
                                                  sent("0001-01-01T00:00:00+14:00")),
        "CloudEvent time 9999-12-31T23:59:59-01:00": http("POST", late_target, late_headers,
                                                          late),
        "X-Forwarded-Host h:99999": http("POST", "/twilio/status", {
            **form_type, "X-Twilio-Signature": sign("/twilio/status", form,
                                                    base="https://h:99999"),
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "h:99999"}, body),
    }
    answers = {name: await raw_request(port, request) for name, request in cases.items()}
    for name, (status, answer) in answers.items():
        assert 400 <= status < 500, f"{name}: {answer!r}"
    assert b"must be a path" in answers["absolute-form target"][1]
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert all(r.exc_info is None for r in caplog.records)


# Finding 6: secrets reached the log through aiohttp's tracebacks.

async def test_secrets_are_scrubbed_from_tracebacks_in_a_real_servers_log(
        db_url: str, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = dict(os.environ, DATABASE_URL=db_url, TWILIO_AUTH_TOKEN=TEST_TOKEN,
               SMSLEDGER_API_KEY=API_KEY, SMSLEDGER_PUBLIC_URL=PUBLIC_URL,
               SMSLEDGER_DATA_DIR=str(tmp_path / "data"), SMSLEDGER_LOG_LEVEL="DEBUG")
    with log_path.open("wb") as log_file:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsledger.cli", "serve", "--port", str(port), env=env,
            stderr=log_file, stdout=log_file)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = await raw_request(port, http("GET", "/healthz", {}, b""))
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.returncode is None, log_path.read_text()
            await asyncio.sleep(0.2)
        padded = http("POST", "/v1/messages", {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {API_KEY}" + "A" * 8200}, b"{}")
        bad_version = (f"POST /v1/messages?api_key={API_KEY} HTTP/9.9\r\nHost: x\r\n"
                       "Content-Length: 0\r\n\r\n").encode()
        assert (await raw_request(port, padded))[0] == 400
        assert (await raw_request(port, bad_version))[0] == 400
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
    text = log_path.read_text()
    assert "LineTooLong" in text and "BadStatusLine" in text   # the tracebacks are there ...
    assert "**********" in text
    assert API_KEY not in text and API_KEY[:8] not in text     # ... without the key
    assert " ERROR " not in text                               # and at DEBUG: the client's fault


def test_a_secret_cut_short_is_scrubbed_too() -> None:
    from smsledger.logs import ScrubSecrets

    scrub = ScrubSecrets([API_KEY]).scrub
    assert scrub(f"b'Bearer {API_KEY}AAAA'") == "b'Bearer **********AAAA'"
    assert scrub(f"b'Bearer {API_KEY[:12]}...'") == "b'Bearer **********...'"
    assert scrub(f"{API_KEY[:7]}") == API_KEY[:7]


# Finding 8: a body sent slowly held its connection open indefinitely.

@pytest.fixture
async def slow_ingest(settings: Settings) -> AsyncIterator[Client]:
    slow = dataclasses.replace(settings, body_timeout_s=1.0, max_slow_readers=2)
    async with TestClient(TestServer(create_app(slow))) as client:
        yield client


async def wait_until(check: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_slow_body_times_out_and_slow_readers_are_bounded(
        slow_ingest: Client, db: asyncpg.Connection) -> None:
    port = slow_ingest.port
    assert port is not None
    form = status_form("SM" + "6" * 32, "delivered")
    body = urlencode(form).encode()
    request = http("POST", "/twilio/status", {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign("/twilio/status", form)}, body)
    head = request[:len(request) - len(body)]
    readers = slow_ingest.app[SLOW_READERS]

    # A client sending its body a byte every 0.2 s: 408 after the 1-s timeout, then closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head + body[:1])

    async def trickle() -> None:
        for i in range(1, len(body)):
            await asyncio.sleep(0.2)
            if writer.is_closing():
                return
            writer.write(body[i:i + 1])

    trickling = asyncio.create_task(trickle())
    head_of_answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    elapsed = time.monotonic() - started
    # Stop sending at once: a byte that reaches the closed socket is answered with a reset,
    # which can overtake the rest of the answer on a loaded machine.
    trickling.cancel()
    try:
        rest = await asyncio.wait_for(reader.read(), 10)      # to EOF: the server closes
    except ConnectionResetError:
        rest = b""
    writer.close()
    assert head_of_answer.startswith(b"HTTP/1.1 408")
    assert not rest or b"did not arrive within 1 s" in rest
    assert 1.0 <= elapsed < 10
    await wait_until(lambda: readers.reading == 0)

    # Two stalled bodies take both slow-reader places; a third is 503 at once, and a request
    # whose body comes whole is served meanwhile.
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _, w in stalled:
        w.write(head + body[:1])
    await wait_until(lambda: readers.reading == 2)
    status, answer = await raw_request(port, head + body[:1])
    assert status == 503 and b"too many request bodies" in answer
    status, _ = await raw_request(port, request)
    assert status == 200
    for _, w in stalled:
        w.close()
    await wait_until(lambda: readers.reading == 0)
    assert await db.fetchval("SELECT count(*) FROM events") == 1


# Also: `report hygiene --out DIR` wrote through a symbolic link planted where it writes.

@pytest.mark.parametrize("planted", ["dir", "hygiene-latest.csv", "hygiene-latest.html",
                                     "hygiene-20261130T120000Z.csv"])
def test_a_report_is_not_written_through_a_symlink(tmp_path: Path, planted: str) -> None:
    from analytics.hygiene import load_rules
    from analytics.report import ReportRefused, write_files

    victim = tmp_path / "victim"
    victim.write_text("untouched")
    out = tmp_path / "reports"
    if planted == "dir":
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    else:
        out.mkdir()
        (out / planted).symlink_to(victim)
    rows = [{"phone": "+14155550123", "verdict": "remove"}]
    with pytest.raises(ReportRefused, match="symbolic link"):
        write_files(rows, {"remove": 1}, out, load_rules(),
                    datetime(2026, 11, 30, 12, tzinfo=UTC))
    assert victim.read_text() == "untouched"
    assert not list((tmp_path / "elsewhere").glob("*")) if planted == "dir" else True


def test_a_report_is_written_when_no_symlink_is_in_the_way(tmp_path: Path) -> None:
    from analytics.hygiene import load_rules
    from analytics.report import write_files

    csv_path, _ = write_files([], {}, tmp_path / "reports", load_rules(),
                              datetime(2026, 11, 30, 12, tzinfo=UTC))
    assert csv_path.exists() and (tmp_path / "reports" / "hygiene-latest.csv").exists()


# Also: with forwarding trusted, the first X-Forwarded-Host won; refusals flooded the INFO log.

async def test_the_forwarded_host_the_proxy_appended_is_taken(
        odd_ingest: Client, db: asyncpg.Connection) -> None:
    form = status_form("SM" + "7" * 32, "sent")
    proxied = sign("/twilio/status", form, base="https://sms.proxy.example")
    evil = sign("/twilio/status", form, base="https://evil.example")
    # The client sent its own X-Forwarded-Host; the proxy appended the real one after it.
    for headers, signature, expected in [
            ({"X-Forwarded-Host": "evil.example, sms.proxy.example"}, evil, 403),
            ({"X-Forwarded-Host": "evil.example, sms.proxy.example"}, proxied, 200)]:
        async with odd_ingest.post("/twilio/status", data=form, headers={
                "X-Forwarded-Proto": "https", "X-Twilio-Signature": signature,
                **headers}) as resp:
            assert resp.status == expected
    # The same with the proxy's value as a header line of its own.
    port = odd_ingest.port
    assert port is not None
    request = http("POST", "/twilio/status", {
        "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https",
        "X-Twilio-Signature": evil, "X-Forwarded-Host": "evil.example"},
        urlencode(form).encode())
    request = request.replace(b"\r\n\r\n", b"\r\nX-Forwarded-Host: sms.proxy.example\r\n\r\n", 1)
    assert (await raw_request(port, request))[0] == 403
    other = status_form("SM" + "8" * 32, "sent")
    request = http("POST", "/twilio/status", {
        "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https",
        "X-Twilio-Signature": sign("/twilio/status", other, base="https://sms.proxy.example"),
        "X-Forwarded-Host": "evil.example"}, urlencode(other).encode())
    request = request.replace(b"\r\n\r\n", b"\r\nX-Forwarded-Host: sms.proxy.example\r\n\r\n", 1)
    assert (await raw_request(port, request))[0] == 200
    assert await db.fetchval("SELECT count(*) FROM events") == 2


async def test_refusals_are_logged_at_debug_and_counted_at_info(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with TestClient(TestServer(create_app(settings))) as client:
        for _ in range(30):
            async with client.post("/twilio/status", data={"a": "b"},
                                   headers={"X-Twilio-Signature": "forged"}) as resp:
                assert resp.status == 403
        async with client.post("/twilio/status", data=b"&" * 300, headers={
                "Content-Type": "application/x-www-form-urlencoded"}) as resp:
            assert resp.status == 400
        assert not [r for r in caplog.records if "refused POST" in r.getMessage()]
    # The count goes out every minute, and when the ingester stops.
    summaries = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and
                 r.getMessage().startswith("refused 31 requests")]
    assert summaries == ["refused 31 requests in the last 60 s (signature_invalid 30, "
                         "too_many_fields 1)"]
