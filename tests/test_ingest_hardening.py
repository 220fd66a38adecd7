"""Issue 15's ingest-side findings, each reproduced as the attacker did it, asserting what holds
now: the form parser's cost, strict shapes, consent replays, secrets in logs, odd input, slow
bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.forms import MAX_FORM_FIELDS, BadRequest, parse_form
from tests.conftest import post_signed

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


