"""SharedKey signatures and auth token rotation (issue 14, items 1 and 2): the ingester accepts
what Twilio signs with a SharedKey secret or with the secondary auth token, proven against the
twilio library's own ``RequestValidator.compute_signature``, and refuses unknown keys and retired
secrets with nothing stored."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from ingest.app import create_app
from ingest.signature import Matched, UnknownKey, WebhookVerifier, key_id_of
from schema.settings import SETTINGS, Secret, Settings, SettingsError
from tests.conftest import PUBLIC_URL, TEST_TOKEN, status_form

Client = TestClient[object, object]
KEY_A = "KS" + "a" * 32
KEY_B = "KS" + "b" * 32
SECRET_A = "shared-secret-a-" + "1" * 16
SECRET_B = "shared-secret-b-" + "2" * 16
SECONDARY = "secondary-token-" + "3" * 16
RETIRED = "retired-token-" + "4" * 16
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=30)
secrets_ = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00,="),
                   min_size=1, max_size=80).filter(lambda t: t.strip() == t and t)
urls = st.builds(lambda scheme, port, path: f"{scheme}://sms.example.com{port}/{path}",
                 st.sampled_from(["http", "https"]), st.sampled_from(["", ":8443", ":443"]),
                 st.text("abcxyz/-_.0123456789", max_size=20))


def verifier(secondary: str = "") -> WebhookVerifier:
    return WebhookVerifier(Secret(TEST_TOKEN), Secret(secondary),
                           {KEY_A: Secret(SECRET_A), KEY_B: Secret(SECRET_B)})


@settings(max_examples=200, deadline=None)
@given(secret=secrets_, url=urls, params=st.dictionaries(text, text, max_size=6),
       algorithm=st.sampled_from(["HMAC_SHA1", "HMAC_SHA256"]))
def test_shared_key_form_signature_equals_twilio(secret: str, url: str, params: dict[str, str],
                                                 algorithm: str) -> None:
    ours = WebhookVerifier(Secret(TEST_TOKEN), None, {KEY_A: Secret(secret)})
    expected = RequestValidator(secret).compute_signature(url, params, algorithm)
    header = f"key={KEY_A},algorithm={algorithm}"
    assert ours.verify(url, params, expected, header) is Matched.SHARED_KEY
    # The auth token's signature is not the key's: it is refused when the header names a key.
    token_sig = RequestValidator(TEST_TOKEN).compute_signature(url, params, algorithm)
    if token_sig != expected:
        assert ours.verify(url, params, token_sig, header) is None


@settings(max_examples=200, deadline=None)
@given(secret=secrets_, url=urls, body=st.text(max_size=200),
       algorithm=st.sampled_from(["HMAC_SHA1", "HMAC_SHA256"]))
def test_shared_key_json_signature_equals_twilio(secret: str, url: str, body: str,
                                                 algorithm: str) -> None:
    """JSON bodies: the URL carries bodySHA256 and the signature covers the URL alone."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    signed_url = f"{url}?bodySHA256={digest}"
    theirs = RequestValidator(secret)
    expected = theirs.compute_signature(signed_url, {}, algorithm)
    assert theirs.validate(signed_url, body, expected, algorithm)
    ours = WebhookVerifier(Secret(TEST_TOKEN), None, {KEY_B: Secret(secret)})
    header = f"algorithm={algorithm}, key={KEY_B}"
    assert ours.verify(signed_url, {}, expected, header) is Matched.SHARED_KEY


def test_which_secret_matched_and_unknown_keys() -> None:
    url, params = PUBLIC_URL + "/twilio/status", {"MessageSid": "SM1"}
    v = verifier(SECONDARY)
    assert v.verify(url, params, RequestValidator(TEST_TOKEN).compute_signature(url, params),
                    None) is Matched.AUTH_TOKEN
    assert v.verify(url, params, RequestValidator(SECONDARY).compute_signature(url, params),
                    "") is Matched.AUTH_TOKEN_SECONDARY
    assert v.verify(url, params, RequestValidator(RETIRED).compute_signature(url, params),
                    None) is None
    with pytest.raises(UnknownKey) as caught:
        v.verify(url, params, "x", "key=KSnope,algorithm=HMAC_SHA256")
    assert caught.value.key_id == "KSnope"
    assert key_id_of("algorithm=HMAC_SHA1") is None and key_id_of(None) is None
    assert SECRET_A not in repr(v) and SECONDARY not in repr(v) and KEY_A in repr(v)


def test_secondary_warning_once_an_hour(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    v = WebhookVerifier(Secret(TEST_TOKEN), Secret(SECONDARY), clock=lambda: now[0])
    url, params = PUBLIC_URL + "/twilio/status", {"MessageSid": "SM1"}
    sig = RequestValidator(SECONDARY).compute_signature(url, params)
    with caplog.at_level(logging.WARNING, "smsledger.ingest.signature"):
        for step in (0, 10, 3000, 600, 100):   # at 1000, 1010, 4010, 4610, 4710
            now[0] += step
            assert v.verify(url, params, sig, None) is Matched.AUTH_TOKEN_SECONDARY
    warnings = [r for r in caplog.records if "SECONDARY" in r.getMessage()]
    assert len(warnings) == 2   # at 1000 and at 4610 (3,610 s later)
    assert all(SECONDARY not in r.getMessage() for r in caplog.records)


def test_shared_keys_setting_is_checked_and_hidden() -> None:
    env = {"SMSLEDGER_WEBHOOK_SHARED_KEYS": f"{KEY_A}={SECRET_A}, {KEY_B}={SECRET_B}",
           "TWILIO_AUTH_TOKEN_SECONDARY": SECONDARY}
    s = Settings.from_env(env)
    assert SECRET_A not in repr(s) and SECONDARY not in repr(s)
    assert isinstance(s.webhook_shared_keys, Secret)
    v = WebhookVerifier.from_settings(s)
    assert KEY_A in repr(v) and KEY_B in repr(v)
    for bad in (f"{KEY_A}", f"{KEY_A}=", "=secret", f"{KEY_A}={SECRET_A},{KEY_A}=other",
                f"K S={SECRET_A}", f"{KEY_A}={SECRET_A},,"):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"SMSLEDGER_WEBHOOK_SHARED_KEYS": bad})
        message = str(caught.value)
        assert "SMSLEDGER_WEBHOOK_SHARED_KEYS" in message
        assert SECRET_A not in message
    assert {s.env for s in SETTINGS} >= {"SMSLEDGER_WEBHOOK_SHARED_KEYS",
                                         "TWILIO_AUTH_TOKEN_SECONDARY"}


# -- through the real app ----------------------------------------------------------------------

@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Client]:
    rotated = dataclasses.replace(
        settings, twilio_auth_token_secondary=Secret(SECONDARY),
        webhook_shared_keys=Secret(f"{KEY_A}={SECRET_A},{KEY_B}={SECRET_B}"))
    async with TestClient(TestServer(create_app(rotated))) as client:
        yield client


async def post_form(client: Client, path: str, params: dict[str, str], secret: str,
                    header: str | None = None, algorithm: str = "HMAC_SHA1") -> int:
    signature = RequestValidator(secret).compute_signature(PUBLIC_URL + path, params, algorithm)
    headers = {"X-Twilio-Signature": signature}
    if header is not None:
        headers[SETTINGS_HEADER] = header
    async with client.post(path, data=params, headers=headers) as resp:
        return resp.status


async def test_signed_by_shared_key_or_secondary_is_stored(app: Client,
                                                           db: asyncpg.Connection) -> None:
    sids = ["SM" + c * 32 for c in "1234"]
    assert await post_form(app, "/twilio/status", status_form(sids[0], "sent"), SECRET_A,
                           f"key={KEY_A},algorithm=HMAC_SHA1") == 200
    assert await post_form(app, "/twilio/status", status_form(sids[1], "sent"), SECRET_B,
                           f"key={KEY_B},algorithm=HMAC_SHA256", "HMAC_SHA256") == 200
    assert await post_form(app, "/twilio/status", status_form(sids[2], "sent"), SECONDARY) == 200
    assert await post_form(app, "/twilio/status", status_form(sids[3], "sent"), TEST_TOKEN) == 200
    stored = await db.fetch("SELECT message_sid FROM events ORDER BY position")
    assert [r["message_sid"] for r in stored] == sids
    metrics = await (await app.get("/metrics")).text()
    assert 'smsledger_webhook_signatures_total{secret="shared_key"} 2' in metrics
    assert 'smsledger_webhook_signatures_total{secret="auth_token_secondary"} 1' in metrics
    assert 'smsledger_webhook_signatures_total{secret="auth_token"} 1' in metrics


async def test_event_stream_signed_by_shared_key_sha256_is_stored(
        app: Client, db: asyncpg.Connection) -> None:
    sid = "SM" + "5" * 32
    body = json.dumps([{"specversion": "1.0", "id": "CE" + "0" * 32,
                        "type": "com.twilio.messaging.message.delivered",
                        "data": {"messageSid": sid, "messageStatus": "DELIVERED"}}]).encode()
    path = f"/twilio/events?bodySHA256={hashlib.sha256(body).hexdigest()}"
    for secret, header, expected in ((SECRET_A, f"key={KEY_B},algorithm=HMAC_SHA256", 403),
                                     (SECRET_B, f"key={KEY_B},algorithm=HMAC_SHA256", 200)):
        signature = RequestValidator(secret).compute_signature(PUBLIC_URL + path, {},
                                                               "HMAC_SHA256")
        async with app.post(path, data=body, headers={
                "Content-Type": "application/json", "X-Twilio-Signature": signature,
                SETTINGS_HEADER: header}) as resp:
            assert resp.status == expected
    assert [r["message_sid"] for r in await db.fetch("SELECT message_sid FROM events")] == [sid]


async def test_unknown_key_and_retired_secrets_are_403_and_store_nothing(
        app: Client, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    form = status_form("SM" + "6" * 32, "delivered")
    with caplog.at_level(logging.INFO):
        assert await post_form(app, "/twilio/status", form, SECRET_A,
                               "key=KSretired00,algorithm=HMAC_SHA1") == 403
        # A key's secret under another key's id, the retired token, the key's secret with no
        # header (then only auth tokens count), the auth token under a key's header.
        assert await post_form(app, "/twilio/status", form, SECRET_A,
                               f"key={KEY_B},algorithm=HMAC_SHA1") == 403
        assert await post_form(app, "/twilio/status", form, RETIRED) == 403
        assert await post_form(app, "/twilio/status", form, SECRET_A) == 403
        assert await post_form(app, "/twilio/status", form, TEST_TOKEN,
                               f"key={KEY_A},algorithm=HMAC_SHA1") == 403
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "KSretired00" in logged and "SMSLEDGER_WEBHOOK_SHARED_KEYS" in logged
    for secret in (SECRET_A, SECRET_B, SECONDARY, RETIRED, TEST_TOKEN):
        assert secret not in logged
    metrics = await (await app.get("/metrics")).text()
    assert 'smsledger_requests_rejected_total{reason="signature_unknown_key"} 1' in metrics
    assert 'smsledger_requests_rejected_total{reason="signature_invalid"} 4' in metrics


async def test_without_a_secondary_its_signature_is_refused(ingest: Client,
                                                            db: asyncpg.Connection) -> None:
    """Once the rotation is over (TWILIO_AUTH_TOKEN_SECONDARY unset), the old token is out."""
    assert await post_form(ingest, "/twilio/status", status_form("SM" + "7" * 32, "sent"),
                           SECONDARY) == 403
    assert await db.fetchval("SELECT count(*) FROM events") == 0

