"""Event histories for the differential tests, and the way they reach the store: through the
real ingester (signed classic webhooks and Event Streams batches, sends reported on
``/v1/events/sent`` with the bearer key), never written to the table directly; Lookup answers
as the enrichment job appends them.

A history is a list of actions posted in the order given (hypothesis shuffles them: a status
may arrive before its send is reported, a `sent` after the `delivered`, duplicates by either
channel). Event Streams carry the fact's own time, so a history spans days; a classic callback
is timed on arrival, as Twilio's are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from hypothesis import strategies as st

from schema import store
from schema.events import number_looked_up
from tests.conftest import PUBLIC_URL, sign

ACCOUNT = "AC" + "5" * 32
API_KEY = "oracle-test-key-0123456789abcdef"
# Valid numbers with what phonenumbers knows of them: US (no carrier data), DE, FR, AU, GG.
PHONES = ["+14155550101", "+14155550102", "+4915112345678", "+33612345678", "+61412345678",
          "+447911123456"]
SENDERS = ["+15005550006", "+15005550007"]
CODES = [30003, 30003, 30003, 30005, 30006, 30004, 30007, 21610, 30008, 21614]
UNKNOWN_STATUS = "pending_carrier"   # a status Twilio might add: stored, ranked in flight
KEYWORDS = ["STOP", " stop ", "Unsubscribe", "START", "yes", "HELP", "info", "OPT OUT",
            "thanks"]


def base_time() -> datetime:
    """Midnight UTC five days ago: histories stay inside the dashboard's default 30 days."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=5)


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str                     # send | status | inbound | lookup
    channel: str                  # api | classic | stream
    sid: str
    phone: str
    at: datetime
    status: str = ""
    code: int | None = None
    sender: str = SENDERS[0]
    category: str = "otp"
    body: str = ""
    carrier: str | None = None    # a Lookup answer's carrier_name


def sid(n: int) -> str:
    return f"SM{n:032x}"


@st.composite
def messages(draw: st.DrawFn, n: int, t0: datetime, phone: str | None = None,
             fate: str | None = None, day: int | None = None, reported: bool | None = None,
             ) -> list[Action]:
    """One outbound message: maybe its send report, then its callbacks (some duplicated)."""
    to = phone or draw(st.sampled_from(PHONES))
    # distinct times for distinct messages (n < 60 seconds apart within a minute slot)
    sent_at = t0 + timedelta(days=draw(st.integers(0, 3)) if day is None else day,
                             minutes=draw(st.integers(0, 1439)), seconds=n % 60,
                             milliseconds=draw(st.integers(0, 999)))
    fate = fate or draw(st.sampled_from(["delivered", "delivered", "undelivered", "failed",
                                         "sent", "none"]))
    latency = timedelta(milliseconds=draw(st.integers(300, 40_000)))
    sender = draw(st.sampled_from(SENDERS))
    category = draw(st.sampled_from(["otp", "otp", "transactional", "marketing"]))
    if reported is None:
        reported = draw(st.sampled_from([True, True, True, False]))
    out = []
    if reported:
        out.append(Action("send", "api", sid(n), to, sent_at, sender=sender, category=category))
    statuses: list[tuple[str, int | None, datetime]] = []
    if fate != "none":
        statuses.append(("sent", None, sent_at + latency / 3))
    if draw(st.integers(0, 5)) == 0:
        statuses.append((UNKNOWN_STATUS, None, sent_at + latency / 2))
    if fate in ("undelivered", "failed"):
        statuses.append((fate, draw(st.sampled_from(CODES)), sent_at + latency))
    elif fate == "delivered":
        statuses.append(("delivered", None, sent_at + latency))
    for status, code, at in statuses:
        for _ in range(draw(st.integers(1, 2))):       # a duplicate, by either channel
            channel = draw(st.sampled_from(["stream", "stream", "classic"]))
            out.append(Action("status", channel, sid(n), to, at, status, code, sender))
    return out


@st.composite
def inbound(draw: st.DrawFn, n: int, t0: datetime) -> Action:
    at = t0 + timedelta(days=draw(st.integers(0, 3)), minutes=draw(st.integers(0, 1439)),
                        seconds=n % 60)
    return Action("inbound", draw(st.sampled_from(["stream", "classic"])),
                  f"SM{0xABC000 + n:032x}", draw(st.sampled_from(PHONES)), at,
                  body=draw(st.sampled_from(KEYWORDS)))


@st.composite
def lookups(draw: st.DrawFn, t0: datetime) -> list[Action]:
    """Lookup v2 answers (the enrichment job's events, one per number ever), for some of the
    numbers, posted anywhere among the messages: those sent before must take the answer too.
    A carrier of None (Twilio knew none) leaves the number's hint."""
    phones = draw(st.lists(st.sampled_from(PHONES), unique=True, max_size=3))
    return [Action("lookup", "api", "", phone, t0, status=draw(st.sampled_from(
                       ["mobile", "landline", "nonFixedVoip"])),
                   carrier=draw(st.sampled_from(["Carrier A", "Carrier B", None])))
            for phone in phones]


# Hygiene cases planted on their own number, each with its near misses.
PLANTED = {
    "unreachable": [(0, "undelivered", 30003), (1, "undelivered", 30003),
                    (2, "undelivered", 30003)],
    "one_day": [(1, "undelivered", 30003)] * 3,
    "two_only": [(0, "undelivered", 30003), (2, "undelivered", 30003)],
    "delivery_between": [(0, "undelivered", 30003), (1, "delivered", None),
                         (2, "undelivered", 30003), (3, "undelivered", 30003)],
    "removed": [(0, "delivered", None), (1, "failed", 30005)],
    "removed_then_delivered": [(0, "undelivered", 30006), (2, "delivered", None)],
    "blocked": [(1, "undelivered", 30004)],
    "filtered": [(0, "undelivered", 30007)] * 3,
    "opted_out_by_21610": [(1, "failed", 21610)],
}
PLANTED_PHONE = "+61412345679"


@st.composite
def histories(draw: st.DrawFn) -> list[Action]:
    t0 = base_time()
    actions: list[Action] = []
    count = draw(st.integers(1, 12))
    for n in range(count):
        actions += draw(messages(n, t0))
    case = draw(st.sampled_from(sorted(PLANTED)))
    for i, (day, fate, _code) in enumerate(PLANTED[case]):
        msg = draw(messages(40 + i, t0, PLANTED_PHONE, fate, day, reported=True))
        actions += [a if a.status != fate else dataclasses.replace(a, code=_code)
                    for a in msg]
    for n in range(draw(st.integers(0, 4))):
        actions.append(draw(inbound(n, t0)))
    actions += draw(lookups(t0))
    return draw(st.permutations(actions))


class Poster:
    """Posts actions to the real ingester app, signed as Twilio signs."""

    def __init__(self, client: TestClient[Any, Any], database_url: str) -> None:
        self.client = client
        self.database_url = database_url
        self.n = 0

    async def post(self, a: Action) -> None:
        self.n += 1
        if a.kind == "lookup":
            # Appended as the enrichment job appends Twilio's answer (analytics/enrich.py).
            pg = await asyncpg.connect(self.database_url)
            try:
                await store.append(pg, [number_looked_up(
                    phone=a.phone, carrier_name=a.carrier, line_type=a.status,
                    mobile_country_code=None, mobile_network_code=None, error_code=None)])
            finally:
                await pg.close()
        elif a.kind == "send":
            item = {"sid": a.sid, "to": a.phone, "from": a.sender, "category": a.category,
                    "sent_at": a.at.isoformat().replace("+00:00", "Z"), "tags": ["oracle"]}
            await self._expect_2xx(self.client.post(
                "/v1/events/sent", json=item, headers={"Authorization": f"Bearer {API_KEY}"}))
        elif a.channel == "classic":
            path, form = self._form(a)
            await self._expect_2xx(self.client.post(
                path, data=form, headers={"X-Twilio-Signature": sign(path, form)}))
        else:
            await self._stream(a)

    def _form(self, a: Action) -> tuple[str, dict[str, str]]:
        if a.kind == "inbound":
            return "/twilio/inbound", {"MessageSid": a.sid, "SmsSid": a.sid,
                                       "AccountSid": ACCOUNT, "From": a.phone,
                                       "To": SENDERS[0], "Body": a.body, "NumMedia": "0"}
        form = {"MessageSid": a.sid, "SmsSid": a.sid, "MessageStatus": a.status,
                "SmsStatus": a.status, "AccountSid": ACCOUNT, "From": a.sender, "To": a.phone,
                "ApiVersion": "2010-04-01"}
        if a.code is not None:
            form["ErrorCode"] = str(a.code)
        return "/twilio/status", form

    async def _stream(self, a: Action) -> None:
        data: dict[str, Any] = {"messageSid": a.sid, "accountSid": ACCOUNT,
                                "timestamp": a.at.isoformat()}
        if a.kind == "inbound":
            kind = "inbound-message.received"
            data.update({"from": a.phone, "to": SENDERS[0], "body": a.body})
        else:
            kind = f"message.{a.status}"
            data.update({"from": a.sender, "to": a.phone, "messageStatus": a.status.upper()})
            if a.code is not None:
                data["errorCode"] = a.code
        event = {"specversion": "1.0", "id": f"EZ{self.n:032x}",
                 "source": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{a.sid}.json",
                 "type": f"com.twilio.messaging.{kind}",
                 "time": a.at.isoformat().replace("+00:00", "Z"), "data": data}
        body = json.dumps([event]).encode()
        path = f"/twilio/events?bodySHA256={hashlib.sha256(body).hexdigest()}"
        signature = sign(path, {}, base=PUBLIC_URL)
        await self._expect_2xx(self.client.post(path, data=body, headers={
            "Content-Type": "application/json", "X-Twilio-Signature": signature}))

    @staticmethod
    async def _expect_2xx(request: Any) -> None:
        async with request as resp:
            assert resp.status < 300, (resp.status, await resp.text())
