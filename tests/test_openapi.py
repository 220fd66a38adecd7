"""/openapi.json is true to the app, and the app survives fuzzing against it: schemathesis
over HTTP, hypothesis on the form and CloudEvents parsers. No 5xx, nothing malformed stored."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.app import create_app
from ingest.forms import BadRequest, parse_form
from ingest.openapi import SPEC
from schema import events
from schema.events import EventType, InvalidEvent
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger.devdb import free_port, port_open
from tests.conftest import TEST_TOKEN

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "AC" + "7" * 32
API_KEY = "fuzz-api-key-0123456789abcdef"


def test_spec_lists_exactly_the_routes_served(db_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=db_url, twilio_auth_token=Secret(TEST_TOKEN),
                              data_dir=tmp_path))
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    documented = {(method, path) for path, ops in SPEC["paths"].items() for method in ops}
    assert served == documented


@pytest.fixture
def simulated_twilio() -> Iterator[str]:
    """The simulator on its own thread and loop, for an ingester in another process."""
    port = free_port()
    loop = asyncio.new_event_loop()
    sim = TwilioSim(SimConfig(account_sid=ACCOUNT, auth_token=TEST_TOKEN, seed=3, numbers=50,
                              time_scale=0.01, verify_service_sid="VA" + "7" * 32))
    runner = web.AppRunner(create_sim_app(sim))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.mark.timeout(400)   # schemathesis' four phases over 11 operations, signing each request
def test_signed_fuzzing_passes_every_check_and_every_accepted_request_is_stored(
        db_url: str, tmp_path: Path, simulated_twilio: str) -> None:
    """schemathesis with ``--checks all`` (response schemas, content types, status codes,
    positive data accepted, negative data rejected...) against a real ingester, each webhook
    signed by the real RequestValidator (tests/fuzz_hooks.py): the fuzzing gets in. Then every
    request answered 2xx must have left its events in PostgreSQL."""
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, DATABASE_URL=db_url, TWILIO_AUTH_TOKEN=TEST_TOKEN,
               TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_PHONE_NUMBER="+15005550006",
               TWILIO_VERIFY_SERVICE_SID="VA" + "7" * 32, SMSLEDGER_API_KEY=API_KEY,
               SMSLEDGER_TWILIO_API_URL=simulated_twilio, SMSLEDGER_DATA_DIR=str(tmp_path),
               SMSLEDGER_PUBLIC_URL=public_url, SMSLEDGER_LOG_LEVEL="WARNING")
    accepted = tmp_path / "accepted.jsonl"
    fuzz_env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.fuzz_hooks", PYTHONPATH=str(ROOT),
                    FUZZ_PUBLIC_URL=public_url, FUZZ_AUTH_TOKEN=TEST_TOKEN,
                    FUZZ_ACCOUNT_SID=ACCOUNT, FUZZ_NUMBERS="3,50", FUZZ_LOG=str(accepted))
    log = (tmp_path / "ingester.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "smsledger.cli", "serve", "--port",
                               str(port)], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.1)
        fuzz = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"),
             "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run",
             f"{public_url}/openapi.json", "--checks", "all", "--max-examples", "40",
             "--seed", "7", "--request-timeout", "10", "--no-shrink",
             # NUL cannot be stored (jsonb, UTF-8 text): refused with 400 wherever it is
             "--generation-allow-x00", "false",
             "-H", f"Authorization: Bearer {API_KEY}"],
            capture_output=True, text=True, timeout=500, check=False, cwd=tmp_path,
            env=fuzz_env)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    (tmp_path / "schemathesis.txt").write_text(fuzz.stdout)
    assert fuzz.returncode == 0, fuzz.stdout[-6000:] + fuzz.stderr[-2000:]
    assert "passed" in fuzz.stdout.lower()
    assert TEST_TOKEN not in (tmp_path / "ingester.log").read_text()
    lines = [json.loads(line) for line in accepted.read_text().splitlines()]
    by_path = {path: sum(1 for r in lines if r["path"] == path) for path in SPEC["paths"]}
    # The fuzzing got in: signed webhooks and keyed /v1 calls were accepted, on every route
    # that stores something.
    for path in ("/twilio/status", "/twilio/inbound", "/twilio/events", "/v1/events/sent"):
        assert by_path[path] > 0, (path, by_path)

    async def check_store() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT type, idempotency_key, message_sid, payload "
                                    "FROM events")
        finally:
            await conn.close()
        for row in rows:
            assert row["type"] in {str(t) for t in EventType}
            assert row["idempotency_key"] and isinstance(json.loads(row["payload"]), dict)
        stored_sids = {r["message_sid"] for r in rows}
        for request in lines:
            for sid in accepted_sids(request):
                assert sid in stored_sids, ("accepted but nothing stored", request)

    asyncio.run(check_store())


def accepted_sids(request: dict[str, Any]) -> list[str]:
    """The message SIDs a 2xx request must have stored events for."""
    body, path = request["body"], request["path"]
    if path in ("/twilio/status", "/twilio/inbound") and isinstance(body, dict):
        sid = body.get("MessageSid") or body.get("SmsSid")
        return [str(sid).strip()] if sid else []
    if path == "/twilio/events" and isinstance(body, list):
        return [str(e["data"]["messageSid"]) for e in body
                if isinstance(e, dict) and isinstance(e.get("data"), dict)
                and str(e.get("type", "")).startswith("com.twilio.messaging.")
                and e["data"].get("messageSid")]
    if path == "/v1/events/sent":
        items = body if isinstance(body, list) else [body]
        return [str(i["sid"]) for i in items if isinstance(i, dict) and "sid" in i]
    if path == "/v1/messages":
        return [json.loads(request["response"])["sid"]]
    return []


form_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(st.sampled_from(["MessageSid", "MessageStatus", "To", "ErrorCode",
                                        "Body", "From", "SmsSid", "x"]),
                       st.text(max_size=30)), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
        if all("\ud800" > c or c > "\udfff" for _, v in pairs for c in v) else b""))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=form_bytes)
def test_form_parser_never_crashes_and_never_passes_a_nul(body: bytes) -> None:
    try:
        fields = parse_form(body)
    except BadRequest as exc:
        assert exc.status == 400
        return
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        assert "\x00" not in name and all("\x00" not in v for v in values)
    for build in (events.status_callback, events.inbound_message):
        try:
            built = build(fields)
        except InvalidEvent:
            continue
        for event in (built if isinstance(built, list) else [built]):
            assert event.idempotency_key and event.message_sid
            json.dumps(event.payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4), max_leaves=12)
cloud_events = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=10), st.integers(), st.none()),
     "type": st.sampled_from(["com.twilio.messaging.message.delivered",
                              "com.twilio.messaging.message.failed",
                              "com.twilio.messaging.inbound-message.received",
                              "com.twilio.voice.other", ""]),
     "data": st.one_of(json_values, st.fixed_dictionaries(
         {"messageSid": st.text(max_size=34), "messageStatus": st.text(max_size=12),
          "errorCode": st.one_of(st.integers(), st.text(max_size=6), st.none()),
          "to": st.text(max_size=15)}))},
    optional={"time": st.text(max_size=30)})


@settings(max_examples=400, deadline=None)
@given(item=st.one_of(cloud_events, json_values))
def test_cloudevent_parser_never_crashes(item: Any) -> None:
    try:
        built = events.cloud_event(item)
    except InvalidEvent:
        return
    for event in built:
        assert event.idempotency_key and event.message_sid
        assert event.occurred_at.tzinfo is not None
        json.dumps(event.payload)


@settings(max_examples=1000, deadline=None)
@given(text=st.lists(st.sampled_from(list("ab=&%+2B4F0x é\u00ff") +
                                    ["%2", "%zz", "%C3%A9", "%FF", "%2B", "=="]),
                    max_size=25).map("".join))
def test_fast_form_parser_equals_parse_qsl(text: str) -> None:
    from urllib.parse import parse_qsl

    from ingest.forms import parse_pairs
    try:
        expected: Any = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        expected = UnicodeDecodeError
    try:
        got: Any = parse_pairs(text)
    except UnicodeDecodeError:
        got = UnicodeDecodeError
    assert got == expected


@settings(max_examples=1000, deadline=None)
@given(text=st.lists(st.sampled_from(list("ab=&%+2B4F0x é\u00ff") +
                                    ["%2", "%zz", "%C3%A9", "%FF", "%2B", "==", "%00"]),
                    max_size=25).map("".join))
def test_form_fields_are_parse_qsl_by_name(text: str) -> None:
    """``parse_form``'s one-pass reading gives what ``parse_qsl`` gives, grouped by name (a
    repeated name keeps every value, in order), and refuses what cannot be stored."""
    from urllib.parse import parse_qsl

    from ingest.forms import BadRequest, parse_form
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
        expected: Any = {}
        for name, value in pairs:
            expected.setdefault(name, []).append(value)
        expected = {name: values[0] if len(values) == 1 else values
                    for name, values in expected.items()}
        if any("\x00" in name or "\x00" in value for name, value in pairs):
            expected = "nul_byte"
    except UnicodeDecodeError:
        expected = "invalid_utf8"
    try:
        got: Any = parse_form(text.encode())
    except BadRequest as exc:
        got = exc.reason
    assert got == expected
