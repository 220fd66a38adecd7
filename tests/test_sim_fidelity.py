"""The simulator held to the real library (issue 14, item 6): every attribute the installed
`twilio` package's MessageInstance, Lookup v2 PhoneNumberInstance, VerificationInstance,
VerificationCheckInstance (and FeedbackInstance) reads from a payload is in the simulator's JSON,
with the type the library declares for it; and the simulator's errors have Twilio's shape, which
the real client turns into TwilioRestException with the code and message."""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from twilio.base import deserialize
from twilio.base.exceptions import TwilioRestException
from twilio.rest.api.v2010.account.message import MessageInstance
from twilio.rest.api.v2010.account.message.feedback import FeedbackInstance
from twilio.rest.lookups.v2.phone_number import PhoneNumberInstance
from twilio.rest.verify.v2.service.verification import VerificationInstance
from twilio.rest.verify.v2.service.verification_check import VerificationCheckInstance

from schema.settings import Secret, Settings
from sim.twilio import TwilioSim, create_sim_app
from tests.conftest import TEST_TOKEN
from tests.test_sending import ACCOUNT, VERIFY_SID, sim_config
from twilio_api.client import make_client


def payload_reads(cls: type) -> dict[str, tuple[str, str | None]]:
    """What ``cls.__init__`` reads from its payload: key -> (declared annotation, the
    ``deserialize`` function applied to it, if any), found in the library's own source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    reads: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.AnnAssign):
            continue
        for call in ast.walk(node.value) if node.value else ():
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "get" and isinstance(call.func.value, ast.Name)
                    and call.func.value.id == "payload"):
                key = call.args[0]
                assert isinstance(key, ast.Constant)
                outer = node.value
                helper = (outer.func.attr if isinstance(outer, ast.Call)
                          and isinstance(outer.func, ast.Attribute)
                          and isinstance(outer.func.value, ast.Name)
                          and outer.func.value.id == "deserialize" else None)
                reads[str(key.value)] = (ast.unparse(node.annotation), helper)
    return reads


def enum_values(cls: type, annotation: str) -> set[str] | None:
    """The values of an enum annotation such as ``Optional["MessageInstance.Status"]``."""
    inner = annotation.removeprefix("Optional[").removesuffix("]").strip("'\"")
    if not inner.startswith(cls.__name__ + "."):
        return None
    enum = getattr(cls, inner.split(".", 1)[1])
    return {v for k, v in vars(enum).items() if k.isupper()}


# The library annotates these Lookup v2 fields as `str`, but Twilio sends JSON objects (its
# OpenAPI spec and TWILIO.md: line_type_intelligence has carrier_name, type, ...), and the
# enrichment reads them as objects: an object is the right type for them.
OBJECTS_ANNOTATED_AS_STR = {"line_type_intelligence", "caller_name", "sim_swap",
                            "call_forwarding", "line_status", "identity_match",
                            "reassigned_number", "sms_pumping_risk"}


def type_problem(cls: type, key: str, annotation: str, helper: str | None,
                 value: Any) -> str | None:
    """Why ``value`` is not what the library expects for ``key``, or None."""
    if value is None:
        return None   # every attribute is Optional; which ones may be null is checked apart
    if helper is not None:
        parsed = getattr(deserialize, helper)(value)
        wanted = {"rfc2822_datetime": datetime, "iso8601_datetime": datetime,
                  "integer": int, "decimal": Decimal}[helper]
        return None if isinstance(parsed, wanted) else f"{helper}({value!r}) gave {parsed!r}"
    if key in OBJECTS_ANNOTATED_AS_STR:
        return None if isinstance(value, dict) else f"{value!r} is not an object"
    values = enum_values(cls, annotation)
    if values is not None:
        return None if value in values else f"{value!r} not in {sorted(values)}"
    outer = annotation.removeprefix("Optional[")
    kinds: list[tuple[str, type | tuple[type, ...]]] = [
        ("Dict[", dict), ("List[", list), ("bool", bool), ("int", int), ("float", float),
        ("str", str)]
    for marker, kind in kinds:
        if outer.startswith(marker):
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            return None if ok else f"{value!r} is not {annotation}"
    return f"unknown annotation {annotation}"


def check(cls: type, payload: dict[str, Any], may_be_null: set[str]) -> None:
    reads = payload_reads(cls)
    assert len(reads) >= 6, f"found too few payload reads in {cls.__name__}: {reads}"
    missing = sorted(set(reads) - set(payload))
    assert not missing, f"{cls.__name__}: the simulator's JSON lacks {missing}"
    problems = {key: p for key, (ann, helper) in reads.items()
                if (p := type_problem(cls, key, ann, helper, payload[key])) is not None}
    assert not problems, f"{cls.__name__}: {problems}"
    nulls = {key for key in reads if payload[key] is None}
    assert nulls <= may_be_null, f"{cls.__name__}: unexpected nulls {sorted(nulls - may_be_null)}"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[TwilioSim, TestServer]]:
    twilio = TwilioSim(sim_config(duplicate_rate=0, reorder_rate=0))
    async with TestServer(create_sim_app(twilio)) as server:
        yield twilio, server


def basic_auth() -> dict[str, str]:
    pair = base64.b64encode(f"{ACCOUNT}:{TEST_TOKEN}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def call(server: TestServer, method: str, path: str, data: dict[str, str] | None = None,
               auth: bool = True) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(
            method, str(server.make_url(path)), data=data,
            headers=basic_auth() if auth else {}) as resp:
        return resp.status, await resp.json()


MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages"
# Null in Twilio's own JSON at this point of a message's life (TWILIO.md): no price until it is
# billed (up to 24 h later), no error unless it failed, no date_sent before it is sent, no
# Messaging Service for a plain-number send, no From for a service send until it picks one.
MESSAGE_NULLS = {"price", "error_code", "error_message", "date_sent", "messaging_service_sid",
                 "from"}


async def test_message_json_has_what_the_library_reads(
        sim: tuple[TwilioSim, TestServer]) -> None:
    twilio, server = sim
    good = twilio.numbers_with("good")[0].e164
    status, plain = await call(server, "POST", MESSAGES + ".json",
                               {"To": good, "From": "+15005550006", "Body": "hello"})
    assert status == 201
    check(MessageInstance, plain, MESSAGE_NULLS)
    status, service = await call(server, "POST", MESSAGES + ".json",
                                 {"To": good, "MessagingServiceSid": "MG" + "a" * 32,
                                  "Body": "hi", "ProvideFeedback": "true"})
    assert status == 201 and service["status"] == "accepted"
    check(MessageInstance, service, MESSAGE_NULLS)
    # Once it has its outcome (the simulator runs at a hundredth of Twilio's delays).
    deadline = asyncio.get_running_loop().time() + 30
    while (twilio.messages[plain["sid"]]["status"] in ("queued", "sent")  # noqa: ASYNC110
           and asyncio.get_running_loop().time() < deadline):  # (a timer sets it: no Event)
        await asyncio.sleep(0.02)
    status, fetched = await call(server, "GET", f"{MESSAGES}/{plain['sid']}.json")
    assert status == 200 and fetched["status"] in ("delivered", "undelivered", "failed")
    check(MessageInstance, fetched, MESSAGE_NULLS - {"date_sent"})   # price comes later
    status, page = await call(server, "GET", MESSAGES + ".json?PageSize=10")
    for item in page["messages"]:
        check(MessageInstance, item, MESSAGE_NULLS)
    status, feedback = await call(server, "POST", f"{MESSAGES}/{service['sid']}/Feedback.json",
                                  {"Outcome": "confirmed"})
    assert status == 201
    check(FeedbackInstance, feedback, set())


async def test_history_messages_have_what_the_library_reads() -> None:
    """The past messages a simulator with history lists (reconcile and backfill read them)."""
    twilio = TwilioSim(sim_config(history_days=2, numbers=20))
    async with TestServer(create_sim_app(twilio)) as server:
        status, page = await call(server, "GET", MESSAGES + ".json?PageSize=1000")
    assert status == 200 and page["messages"]
    for item in page["messages"]:
        check(MessageInstance, item, MESSAGE_NULLS)


# Lookup v2: the packages not asked for in Fields are null, as Twilio sends them.
LOOKUP_NULLS = {"caller_name", "sim_swap", "call_forwarding", "line_status",
                "identity_match", "reassigned_number", "sms_pumping_risk",
                "phone_number_quality_score", "pre_fill"}


async def test_lookup_json_has_what_the_library_reads(sim: tuple[TwilioSim, TestServer]) -> None:
    twilio, server = sim
    number = twilio.numbers_with("good")[0].e164
    status, body = await call(server, "GET",
                              f"/v2/PhoneNumbers/{number}?Fields=line_type_intelligence")
    assert status == 200
    check(PhoneNumberInstance, body, LOOKUP_NULLS)
    assert set(body["line_type_intelligence"]) >= {"carrier_name", "type",
                                                   "mobile_country_code",
                                                   "mobile_network_code", "error_code"}
    status, bare = await call(server, "GET", f"/v2/PhoneNumbers/{number}")
    check(PhoneNumberInstance, bare, LOOKUP_NULLS | {"line_type_intelligence"})


async def test_verify_json_has_what_the_library_reads(sim: tuple[TwilioSim, TestServer]) -> None:
    twilio, server = sim
    number = twilio.numbers_with("good")[0].e164
    base = f"/v2/Services/{VERIFY_SID}"
    status, started = await call(server, "POST", base + "/Verifications",
                                 {"To": number, "Channel": "sms"})
    assert status == 201
    # amount and payee belong to PSD2 verifications; sna to Silent Network Auth: null here.
    check(VerificationInstance, started, {"amount", "payee", "sna"})
    code = twilio.inbox[number][-1].rsplit(" ", 1)[1]
    status, checked = await call(server, "POST", base + "/VerificationCheck",
                                 {"To": number, "Code": code})
    assert status == 201 and checked["status"] == "approved"
    check(VerificationCheckInstance, checked, {"amount", "payee"})


async def test_errors_have_twilios_shape_and_the_client_reads_them(
        sim: tuple[TwilioSim, TestServer]) -> None:
    twilio, server = sim
    stop = twilio.numbers_with("good")[1].e164
    twilio.opted_out.add(stop)
    cases = [
        ("GET", f"{MESSAGES}/SM{'0' * 32}.json", None, True, 404, 20404),
        ("POST", MESSAGES + ".json", {"To": "+1555", "From": "+15005550006", "Body": "x"},
         True, 400, 21211),
        ("POST", MESSAGES + ".json", {"To": stop, "From": "+15005550006", "Body": "x"},
         True, 400, 21610),
        ("GET", MESSAGES + ".json", None, False, 401, 20003),
        ("POST", f"/v2/Services/{VERIFY_SID}/VerificationCheck",
         {"To": stop, "Code": "123456"}, True, 404, 20404),
        ("POST", f"{MESSAGES}/SM{'0' * 32}/Feedback.json", {"Outcome": "confirmed"}, True,
         404, 20404),
    ]
    for method, path, data, auth, http_status, code in cases:
        status, body = await call(server, method, path, data, auth)
        assert status == http_status, path
        assert set(body) >= {"code", "message", "more_info", "status"}, body
        assert (body["code"], body["status"]) == (code, http_status)
        assert isinstance(body["message"], str) and body["message"]
        assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    # The real client raises TwilioRestException carrying the code and the message.
    settings = Settings(twilio_account_sid=ACCOUNT, twilio_auth_token=Secret(TEST_TOKEN),
                        twilio_api_url=str(server.make_url("")).rstrip("/"))
    client, http = make_client(settings)
    try:
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=stop, from_="+15005550006", body="x")
        assert caught.value.code == 21610 and caught.value.status == 400
        assert "unsubscribed" in caught.value.msg
    finally:
        await http.close()
