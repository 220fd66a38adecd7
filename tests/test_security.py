"""Signatures cannot be replayed onto other content, paths or URLs; the proxy setting works
as documented; secrets stay out of logs, metrics, errors and reprs."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from schema.settings import Secret, Settings
from tests.conftest import PUBLIC_URL, TEST_TOKEN, sign, status_form

API_KEY = "security-test-api-key-000111222"
Client = TestClient[object, object]


async def post(client: Client, path: str, form: dict[str, str], signature: str,
               headers: dict[str, str] | None = None) -> int:
    async with client.post(path, data=form, headers={"X-Twilio-Signature": signature,
                                                     **(headers or {})}) as resp:
        return resp.status


async def test_replayed_signatures_are_refused(ingest: Client, db: asyncpg.Connection) -> None:
    form = status_form("SM" + "1" * 32, "delivered")
    good = sign("/twilio/status", form)
    assert await post(ingest, "/twilio/status", form, good) == 200
    changed = dict(form, ErrorCode="30003")                     # one parameter added
    assert await post(ingest, "/twilio/status", changed, good) == 403
    assert await post(ingest, "/twilio/status", dict(form, To="+14155550199"), good) == 403
    assert await post(ingest, "/twilio/inbound", form, good) == 403      # another path
    assert await post(ingest, "/twilio/status?x=1", form, good) == 403   # another query
    http = sign("/twilio/status", form, base=PUBLIC_URL.replace("https", "http"))
    assert await post(ingest, "/twilio/status", form, http) == 403       # scheme changed
    port = sign("/twilio/status", form, base=PUBLIC_URL + ":8443")
    assert await post(ingest, "/twilio/status", form, port) == 403       # port changed
    assert await db.fetchval("SELECT count(*) FROM events") == 1


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[Client]:
    trusting = dataclasses.replace(settings, trust_forwarded=True,
                                   public_url="http://127.0.0.1:9")
    async with TestClient(TestServer(create_app(trusting))) as client:
        yield client


async def test_forwarded_headers_when_trusted(behind_proxy: Client, ingest: Client,
                                              db: asyncpg.Connection) -> None:
    form = status_form("SM" + "2" * 32, "sent")
    proxied = sign("/twilio/status", form, base="https://sms.proxy.example")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.proxy.example"}
    assert await post(behind_proxy, "/twilio/status", form, proxied, forwarded) == 200
    # The same request to an ingester that does not trust the headers: they change nothing.
    assert await post(ingest, "/twilio/status", form, proxied, forwarded) == 403
    # Trusted, but the proxy says another host than Twilio signed: refused.
    wrong = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    assert await post(behind_proxy, "/twilio/status", form, proxied, wrong) == 403


async def test_secrets_stay_out_of_metrics_errors_and_logs(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keyed = dataclasses.replace(settings, api_key=Secret(API_KEY))
    texts = [repr(keyed)]
    async with TestClient(TestServer(create_app(keyed))) as client:
        for path, kwargs in [
                ("/v1/messages", {"json": {"to": "+14155550123", "body": "x"},
                                  "headers": {"Authorization": "Bearer wrong"}}),
                ("/v1/messages", {"json": {"to": "bad", "body": "x"},
                                  "headers": {"Authorization": f"Bearer {API_KEY}"}}),
                ("/twilio/status", {"data": {"MessageSid": "SM1"},
                                    "headers": {"X-Twilio-Signature": "forged"}})]:
            async with client.post(path, **kwargs) as resp:
                texts.append(await resp.text())
        texts.append(await (await client.get("/metrics")).text())
        texts.append(await (await client.get("/readyz")).text())
    texts.append(caplog.text)
    joined = "\n".join(texts)
    assert TEST_TOKEN not in joined and API_KEY not in joined
    assert "missing or wrong API key" in joined


def test_unsigned_large_values_are_not_remembered_by_the_form_parser() -> None:
    """Unquoting is remembered for short values only: it runs before the signature check, so a
    stranger's large percent-encoded values must not accumulate in memory."""
    from urllib.parse import quote_plus

    from ingest import forms

    forms._remembered.clear()
    for i in range(50):
        big = quote_plus(f"+{i}" + "é" * 5000)
        fields = forms.parse_form(f"MessageSid=SM{i}&Body={big}&To=%2B14155550123".encode())
        assert fields["Body"] == f"+{i}" + "é" * 5000
        assert fields["To"] == "+14155550123"
    assert forms._remembered == {"%2B14155550123": "+14155550123"}
    for i in range(2 * forms._REMEMBERED_MAX):   # many distinct short values: bounded
        forms.parse_form(f"To=%2B1415555{i:04d}".encode())
    assert 0 < len(forms._remembered) <= forms._REMEMBERED_MAX
