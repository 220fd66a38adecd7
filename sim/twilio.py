"""The fake Twilio: REST resources in Twilio's shapes, and the callbacks Twilio would send."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import math
import random
import secrets
import string
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import phonenumbers
from aiohttp import web
from twilio.request_validator import RequestValidator

from sim import incidents, world
from sim.incidents import Incident

log = logging.getLogger("smsledger.sim")

GSM7 = set(string.ascii_letters + string.digits + " \n\r@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+"
           ",-./:;<=>?¡ÄÖÑÜ§¿äöñüà")


def segments(body: str) -> int:
    if all(c in GSM7 for c in body):
        return 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    return 1 if len(body) <= 70 else math.ceil(len(body) / 67)


def rfc2822(dt: datetime) -> str:
    return dt.strftime("%a, %d %b %Y %H:%M:%S +0000")


def parse_rfc2822(text: str) -> datetime:
    return datetime.strptime(text, "%a, %d %b %Y %H:%M:%S +0000").replace(tzinfo=UTC)


def sid(prefix: str) -> str:
    """A new resource SID. Not from the seed: the world and the fates repeat with the seed,
    but two runs must never mint the same message SID (the event log would merge them)."""
    return prefix + secrets.token_hex(16)


def twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                             status=status)


@dataclasses.dataclass
class SimConfig:
    account_sid: str
    auth_token: str = dataclasses.field(repr=False)
    seed: int = 1
    numbers: int = 300
    time_scale: float = 1.0          # multiply every delay (tests use 0.01)
    duplicate_rate: float = 0.05     # callbacks sent twice
    reorder_rate: float = 0.05       # final status sent before "sent"
    verify_service_sid: str = "VA" + "0" * 32
    history_days: int = 0            # Message resources already there from past days
    price_delay_s: float = 60.0      # Twilio fills in `price` this long after the final status
    our_number: str = "+15005550006"
    # What the simulated Console has configured (``smsledger doctor`` reads it back): our
    # number's "A message comes in" URL and, for a Messaging Service, its inbound and status
    # callback URLs. Empty: not configured.
    number_sms_url: str = ""
    messaging_service_sid: str = ""
    service_inbound_url: str = ""
    service_status_callback: str = ""
    incidents: tuple[Incident, ...] = ()   # planned outages (sim/incidents.py)


@dataclasses.dataclass
class SimStats:
    created: int = 0
    create_errors: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    inbound_sent: int = 0
    inbound_failed: int = 0


class TwilioSim:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.numbers = world.make_numbers(config.seed, config.numbers)
        self.by_e164 = {n.e164: n for n in self.numbers}
        self.messages: dict[str, dict[str, Any]] = {}
        # Twilio applies a STOP to the Messaging Service it reached, or to the plain number:
        # (phone, MG... or our number). ``opted_out`` is the account-level opt-out setting.
        self.scoped_opt_outs: set[tuple[str, str]] = set()
        self.opted_out: set[str] = set()
        self.verifications: dict[str, dict[str, Any]] = {}
        # Message Feedback: the SIDs created with ProvideFeedback=true, and every feedback
        # posted (message SID -> its outcomes, in order).
        self.feedback_requested: set[str] = set()
        self.feedback: dict[str, list[str]] = {}
        self.inbox: dict[str, list[str]] = {}
        self.stats = SimStats()
        # Prefixes under an SMS pumping incident: their numbers behave like pumped ones.
        self.pumped_prefixes: set[str] = set()
        self._validator = RequestValidator(config.auth_token)
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(64)
        self.started = time.monotonic()    # incidents count their SECONDS from here
        if config.history_days:
            self._make_history(config.history_days)

    def _make_history(self, days: int) -> None:
        """Past messages, as the Messages API would list them: each number texted on about
        half of the days, each with its fate (no callbacks: they happened before us)."""
        rng = random.Random(self.config.seed + 2)
        now = datetime.now(UTC)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        history: list[tuple[datetime, dict[str, Any]]] = []
        for number in self.numbers:
            for day in range(days, 0, -1):
                if rng.random() < 0.5:
                    continue
                created = start - timedelta(days=day) + timedelta(seconds=rng.uniform(
                    8 * 3600, 20 * 3600))
                category = rng.choice(["otp", "transactional", "marketing"])
                outcome = world.fate(rng, number, category, opted_out=False)
                status = outcome.final_status or "failed"
                done = created + timedelta(seconds=outcome.final_after_s)
                history.append((created, {
                    "account_sid": self.config.account_sid, "api_version": "2010-04-01",
                    "body": "", "date_created": rfc2822(created), "date_updated": rfc2822(done),
                    "date_sent": None if outcome.create_error else rfc2822(
                        created + timedelta(seconds=outcome.sent_after_s)),
                    "direction": "outbound-api", "error_code": outcome.error_code,
                    "error_message": None, "from": self.config.our_number,
                    "messaging_service_sid": None, "num_media": "0", "num_segments": "1",
                    "price": world.price(number.country, 1, False, status,
                                         outcome.error_code),
                    "price_unit": "USD", "sid": sid("SM"),
                    "status": status, "to": number.e164}))
        for _, message in sorted(history, key=lambda item: item[0]):
            message["uri"] = (f"/2010-04-01/Accounts/{self.config.account_sid}/Messages/"
                              f"{message['sid']}.json")
            message["subresource_uris"] = {
                "media": message["uri"].replace(".json", "/Media.json"),
                "feedback": message["uri"].replace(".json", "/Feedback.json")}
            self.messages[message["sid"]] = message

    # -- the world ---------------------------------------------------------------------------
    def number(self, e164: str) -> world.Number:
        """A known number, or a good mobile one made up for a number the world lacks."""
        known = self.by_e164.get(e164)
        if known is not None:
            return known
        if any(e164.startswith(p) for p in self.pumped_prefixes):
            parsed = phonenumbers.parse(e164, None)
            region = phonenumbers.region_code_for_number(parsed) or "US"
            name, mcc, mnc, median = world.CARRIERS.get(region, world.CARRIERS["US"])[0]
            return world.Number(e164, region, name, mcc, mnc, "mobile", "pumped", median)
        parsed = phonenumbers.parse(e164, None)
        region = phonenumbers.region_code_for_number(parsed) or "US"
        carriers = world.CARRIERS.get(region, world.CARRIERS["US"])
        index = int(hashlib.sha256(e164.encode()).hexdigest(), 16) % len(carriers)
        name, mcc, mnc, median = carriers[index]
        kind = phonenumbers.number_type(parsed)
        line = "landline" if kind == phonenumbers.PhoneNumberType.FIXED_LINE else "mobile"
        return world.Number(e164, region, name, mcc, mnc, line, "good", median)

    def numbers_with(self, profile: str) -> list[world.Number]:
        return [n for n in self.numbers if n.profile == profile]

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def pending(self) -> int:
        """Callbacks scheduled or being posted."""
        return len(self._timers) + len(self._tasks)

    async def drain(self, timeout_s: float = 30) -> tuple[int, int]:
        """Wait up to ``timeout_s`` for every scheduled callback to be posted; drop (cancel)
        what is still pending then. Returns (callbacks waited for, callbacks dropped)."""
        waited = self.pending
        deadline = asyncio.get_running_loop().time() + timeout_s
        # A poll, not an Event: timers and tasks come and go from many places.
        while self.pending and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        dropped = self.pending
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return waited, dropped

    # -- signed posts, like Twilio -----------------------------------------------------------
    def signed_headers(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {"X-Twilio-Signature": self._validator.compute_signature(url, params),
                "I-Twilio-Idempotency-Token": secrets.token_hex(16),
                "User-Agent": "TwilioProxy/1.1"}

    async def post_signed(self, url: str, params: dict[str, str],
                          sign_url: str | None = None) -> int:
        assert self._session is not None, "start() the simulator first"
        async with self._slots:
            try:
                async with self._session.post(
                        url, data=params,
                        headers=self.signed_headers(sign_url or url, params)) as resp:
                    await resp.read()
                    return resp.status
            except (aiohttp.ClientError, OSError, TimeoutError):
                return 0

    def _later(self, delay_s: float, url: str, params: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            assert handle is not None
            self._timers.discard(handle)
            task = loop.create_task(self._callback(url, params))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(max(0.0, delay_s * self.config.time_scale), fire)
        self._timers.add(handle)

    async def _callback(self, url: str, params: dict[str, str]) -> None:
        status = await self.post_signed(url, params)
        if 200 <= status < 300:
            self.stats.callbacks_sent += 1
        else:
            # Like a classic Twilio webhook: a failed delivery is lost, never retried.
            self.stats.callbacks_failed += 1
            log.debug("status callback to %s failed (%s)", url, status)

    async def send_inbound(self, url: str, from_: str, to: str, body: str,
                           sign_url: str | None = None,
                           messaging_service_sid: str | None = None, **extra: str) -> int:
        """An SMS from ``from_`` to our number ``to`` (in ``messaging_service_sid``'s sender
        pool, if given), posted to the inbound webhook (with ``extra`` fields, e.g. Advanced
        Opt-Out's ``OptOutType``)."""
        word = body.strip().upper()
        scope = (from_, messaging_service_sid or to)
        if word in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
                    "OPTOUT"):
            self.scoped_opt_outs.add(scope)
        elif word in ("START", "YES", "UNSTOP"):
            self.scoped_opt_outs.discard(scope)
            self.opted_out.discard(from_)
        number = self.number(from_)
        message_sid = sid("SM")
        # Like Twilio, the Message resource exists before the webhook is called: the ingester
        # fetches it to confirm a consent change.
        now = rfc2822(datetime.now(UTC))
        self.messages[message_sid] = {
            "account_sid": self.config.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_updated": now, "date_sent": now, "direction": "inbound",
            "error_code": None, "error_message": None, "from": from_,
            "messaging_service_sid": messaging_service_sid, "num_media": "0",
            "num_segments": str(segments(body)), "price": None, "price_unit": "USD",
            "sid": message_sid, "status": "received", "to": to,
            "uri": f"/2010-04-01/Accounts/{self.config.account_sid}/Messages/{message_sid}.json"}
        params = {"MessageSid": message_sid, "AccountSid": self.config.account_sid,
                  "From": from_, "To": to, "Body": body, "NumMedia": "0",
                  "NumSegments": str(segments(body)), "SmsStatus": "received",
                  "ApiVersion": "2010-04-01", "FromCountry": number.country}
        if messaging_service_sid:
            params["MessagingServiceSid"] = messaging_service_sid
        params["SmsSid"] = params["SmsMessageSid"] = params["MessageSid"]
        params.update(extra)
        status = await self.post_signed(url, params, sign_url)
        if 200 <= status < 300:
            self.stats.inbound_sent += 1
        else:
            self.stats.inbound_failed += 1
        return status

    # -- Messages ----------------------------------------------------------------------------
    def create_message(self, form: dict[str, str], media: list[str]) -> tuple[int, dict[str, Any]]:
        """Twilio's Messages create: (HTTP status, JSON body)."""
        to, from_ = form.get("To", ""), form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        body = form.get("Body", "")
        if not to:
            return 400, {"code": 21604, "message": "A 'To' phone number is required."}
        if not from_ and not service:
            return 400, {"code": 21603, "message": "A 'From' phone number is required."}
        if not body and not media:
            return 400, {"code": 21602, "message": "Message body is required."}
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(to, None))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            return 400, {"code": 21211, "message": f"Invalid 'To' Phone Number: {to}"}
        number = self.number(to)
        opted_out = (to in self.opted_out or (to, service) in self.scoped_opt_outs
                     or (to, from_) in self.scoped_opt_outs)
        outcome = world.fate(self.rng, number, world.content_kind(body), opted_out)
        outcome, silenced = incidents.apply(
            self.config.incidents, (time.monotonic() - self.started) / self.config.time_scale,
            number, outcome)
        now = datetime.now(UTC)
        message: dict[str, Any] = {
            "account_sid": self.config.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": rfc2822(now), "date_updated": rfc2822(now), "date_sent": None,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": from_ or None, "messaging_service_sid": service or None,
            "num_media": str(len(media)), "num_segments": str(segments(body)), "price": None,
            "price_unit": "USD", "sid": sid("MM" if media else "SM"),
            "status": "accepted" if service else "queued", "to": to,
        }
        message["uri"] = (f"/2010-04-01/Accounts/{self.config.account_sid}/Messages/"
                          f"{message['sid']}.json")
        message["subresource_uris"] = {
            "media": message["uri"].replace(".json", "/Media.json"),
            "feedback": message["uri"].replace(".json", "/Feedback.json")}
        if outcome.create_error is not None:
            # Since April 2024 a create-time failure is stored as a Message resource too.
            message.update(status="failed", error_code=outcome.create_error)
            self.messages[message["sid"]] = message
            asyncio.get_running_loop().call_later(
                self.config.price_delay_s * self.config.time_scale, self._price, message)
            self.stats.create_errors += 1
            text = {21610: "Attempt to send to unsubscribed recipient",
                    21614: f"'To' number {to} is not a valid mobile number"}
            return 400, {"code": outcome.create_error,
                         "message": text.get(outcome.create_error, "Message refused")}
        self.messages[message["sid"]] = message
        self.stats.created += 1
        if form.get("ProvideFeedback", "").lower() == "true":
            self.feedback_requested.add(message["sid"])
        callback = "" if silenced else form.get("StatusCallback", "")
        self._schedule(message, outcome, callback)
        return 201, message

    def _schedule(self, message: dict[str, Any], outcome: world.Fate, callback: str) -> None:
        sent_at, final_at = outcome.sent_after_s, outcome.final_after_s
        if self.rng.random() < self.config.reorder_rate:
            sent_at, final_at = final_at, sent_at
        loop = asyncio.get_running_loop()
        loop.call_later(outcome.sent_after_s * self.config.time_scale, self._advance, message,
                        "sent", None)
        loop.call_later(outcome.final_after_s * self.config.time_scale, self._advance, message,
                        outcome.final_status, outcome.error_code)
        if not callback:
            return
        plan = [(sent_at, "sent", None), (final_at, outcome.final_status, outcome.error_code)]
        for delay, status, code in plan:
            assert status is not None
            params = self._callback_params(message, status, code)
            self._later(delay, callback, params)
            if self.rng.random() < self.config.duplicate_rate:
                self._later(delay + self.rng.uniform(0.05, 2.0), callback, params)

    def _callback_params(self, message: dict[str, Any], status: str, code: int | None,
                         ) -> dict[str, str]:
        params = {"MessageSid": message["sid"], "SmsSid": message["sid"],
                  "MessageStatus": status, "SmsStatus": status,
                  "AccountSid": self.config.account_sid, "From": message["from"] or "",
                  "To": message["to"], "ApiVersion": "2010-04-01"}
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if code is not None:
            params["ErrorCode"] = str(code)
        if status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        return params

    def _advance(self, message: dict[str, Any], status: str | None, code: int | None) -> None:
        """The resource as the Messages API shows it, by rank (callbacks may be reordered)."""
        rank = {"accepted": 0, "queued": 1, "sent": 2}
        if status is None or rank.get(message["status"], 3) >= rank.get(status, 3):
            return
        now = datetime.now(UTC)
        message.update(status=status, date_updated=rfc2822(now))
        if status == "sent":
            message["date_sent"] = rfc2822(now)
        else:
            message.update(error_code=code)
            # Twilio fills the price in later (up to 24 h), and no webhook says so.
            asyncio.get_running_loop().call_later(
                self.config.price_delay_s * self.config.time_scale, self._price, message)

    def _price(self, message: dict[str, Any]) -> None:
        country = self.number(message["to"]).country
        message["price"] = world.price(country, int(message["num_segments"] or 1),
                                       message["sid"].startswith("MM"), message["status"],
                                       message["error_code"])

    def post_feedback(self, message_sid: str, outcome: str) -> tuple[int, dict[str, Any]]:
        """Twilio's Message Feedback create: (HTTP status, JSON body)."""
        message = self.messages.get(message_sid)
        if message is None:
            return 404, {"code": 20404, "message": "The requested resource was not found"}
        if outcome not in ("confirmed", "unconfirmed"):
            return 400, {"code": 21205, "message": f"Invalid Outcome: {outcome}"}
        self.feedback.setdefault(message_sid, []).append(outcome)
        now = rfc2822(datetime.now(UTC))
        return 201, {"account_sid": self.config.account_sid, "message_sid": message_sid,
                     "outcome": outcome, "date_created": now, "date_updated": now,
                     "uri": message["uri"].replace(".json", "/Feedback.json")}

    # -- Verify ------------------------------------------------------------------------------
    def start_verification(self, to: str, channel: str) -> dict[str, Any]:
        code = "".join(self.rng.choice(string.digits) for _ in range(6))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")   # Verify speaks ISO 8601
        verification_sid = sid("VE")
        service = self.config.verify_service_sid
        verification = {"sid": verification_sid, "service_sid": service,
                        "account_sid": self.config.account_sid, "to": to, "channel": channel,
                        "status": "pending", "valid": False, "date_created": now,
                        "date_updated": now, "lookup": {}, "amount": None, "payee": None,
                        "send_code_attempts": [{"time": now, "channel": channel}],
                        "sna": None, "url": (f"https://verify.twilio.com/v2/Services/{service}"
                                             f"/Verifications/{verification_sid}")}
        self.verifications[to] = {**verification, "code": code}
        self.inbox.setdefault(to, []).append(f"Your verification code is: {code}")
        return verification

    def check_verification(self, to: str, code: str) -> dict[str, Any] | None:
        """A VerificationCheck resource (its own shape, not the Verification's)."""
        pending = self.verifications.get(to)
        if pending is None or pending["status"] != "pending":
            return None
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if code == pending["code"]:
            pending.update(status="approved", valid=True, date_updated=now)
        return {"sid": pending["sid"], "service_sid": pending["service_sid"],
                "account_sid": pending["account_sid"], "to": to, "channel": pending["channel"],
                "status": pending["status"], "valid": pending["valid"], "amount": None,
                "payee": None, "date_created": pending["date_created"],
                "date_updated": pending["date_updated"], "sna_attempts_error_codes": []}


SIM = web.AppKey("sim", TwilioSim)


def _authorized(request: web.Request) -> bool:
    sim = request.app[SIM]
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return (login == sim.config.account_sid and
            secrets.compare_digest(password.encode(), sim.config.auth_token.encode()))


@web.middleware
async def twilio_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/sim/") and not _authorized(request):
        return twilio_error(401, 20003, "Authenticate")
    response: web.StreamResponse = await handler(request)
    return response


async def messages_create(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.match_info["account"] != sim.config.account_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    post = await request.post()
    form = {k: str(v) for k, v in post.items()}
    media = [str(v) for v in post.getall("MediaUrl", [])]
    status, body = sim.create_message(form, media)
    if status != 201:
        return twilio_error(status, body["code"], body["message"])
    return web.json_response(body, status=201)


async def messages_fetch(request: web.Request) -> web.Response:
    message = request.app[SIM].messages.get(request.match_info["sid"])
    if message is None:
        return twilio_error(404, 20404, "The requested resource was not found")
    return web.json_response(message)


async def messages_list(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    q = request.query
    size = min(int(q.get("PageSize", "50")), 1000)
    page = int(q.get("Page", "0"))
    rows = list(reversed(sim.messages.values()))   # newest first, like Twilio
    if "To" in q:
        rows = [m for m in rows if m["to"] == q["To"]]
    if "From" in q:
        rows = [m for m in rows if m["from"] == q["From"]]
    def when(m: dict[str, Any]) -> datetime:
        return parse_rfc2822(m["date_sent"] or m["date_created"])

    for key in ("DateSent>", "DateSent<"):
        if key in q:
            bound = datetime.fromisoformat(q[key].replace("Z", "+00:00"))
            if bound.tzinfo is None:
                bound = bound.replace(tzinfo=UTC)
            if key == "DateSent>":
                rows = [m for m in rows if when(m) >= bound]
            else:
                rows = [m for m in rows if when(m) <= bound]
    chunk = rows[page * size:(page + 1) * size]
    base = request.path

    def page_uri(number: int) -> str:
        # Keep the filters, as Twilio's next_page_uri does.
        query = {k: v for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")}
        return f"{base}?{urlencode({**query, 'PageSize': size, 'Page': number})}"

    next_uri = page_uri(page + 1) if (page + 1) * size < len(rows) else None
    return web.json_response({
        "messages": chunk, "page": page, "page_size": size, "start": page * size,
        "end": page * size + len(chunk) - 1 if chunk else 0,
        "first_page_uri": page_uri(0), "next_page_uri": next_uri,
        "previous_page_uri": None, "uri": request.path_qs})


async def feedback_create(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.match_info["account"] != sim.config.account_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    form = await request.post()
    status, body = sim.post_feedback(request.match_info["sid"], str(form.get("Outcome", "")))
    if status != 201:
        return twilio_error(status, body["code"], body["message"])
    return web.json_response(body, status=201)


async def lookup(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    raw = request.match_info["number"]
    try:
        parsed = phonenumbers.parse(raw, None)
        valid = phonenumbers.is_valid_number(parsed)
    except phonenumbers.NumberParseException:
        return twilio_error(404, 20404, "The requested resource was not found")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    number = sim.number(e164)
    fields = request.query.get("Fields", "")
    line_type = None
    if "line_type_intelligence" in fields and valid:
        line_type = {"carrier_name": number.carrier, "error_code": None,
                     "mobile_country_code": number.mcc, "mobile_network_code": number.mnc,
                     "type": number.line_type}
    return web.json_response({
        "calling_country_code": str(parsed.country_code), "country_code": number.country,
        "phone_number": e164, "national_format": phonenumbers.format_number(
            parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
        "valid": valid, "validation_errors": [] if valid else ["NOT_A_NUMBER"],
        "caller_name": None, "sim_swap": None, "call_forwarding": None, "line_status": None,
        "line_type_intelligence": line_type, "identity_match": None,
        "reassigned_number": None, "sms_pumping_risk": None, "phone_number_quality_score": None,
        "pre_fill": None, "url": f"https://lookups.twilio.com/v2/PhoneNumbers/{e164}"})


async def verification_create(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.match_info["service"] != sim.config.verify_service_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    form = await request.post()
    to, channel = str(form.get("To", "")), str(form.get("Channel", "sms"))
    try:
        valid = phonenumbers.is_valid_number(phonenumbers.parse(to, None))
    except phonenumbers.NumberParseException:
        valid = False
    if not valid:
        return twilio_error(400, 60200, "Invalid parameter `To`")
    return web.json_response(sim.start_verification(to, channel), status=201)


async def verification_check(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    form = await request.post()
    result = sim.check_verification(str(form.get("To", "")), str(form.get("Code", "")))
    if result is None:
        return twilio_error(404, 20404, "The requested resource was not found")
    return web.json_response(result, status=201)


def _account_json(sim: TwilioSim) -> dict[str, Any]:
    sid_ = sim.config.account_sid
    return {"sid": sid_, "owner_account_sid": sid_, "friendly_name": "Simulated account",
            "status": "active", "type": "Full", "auth_token": None,
            "date_created": rfc2822(datetime(2020, 1, 1, tzinfo=UTC)),
            "date_updated": rfc2822(datetime(2020, 1, 1, tzinfo=UTC)),
            "uri": f"/2010-04-01/Accounts/{sid_}.json", "subresource_uris": {}}


async def account_fetch(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.match_info["account"] != sim.config.account_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    return web.json_response(_account_json(sim))


async def incoming_numbers_list(request: web.Request) -> web.Response:
    """Our own number(s), as the Console configured them; ``PhoneNumber`` filters."""
    sim = request.app[SIM]
    if request.match_info["account"] != sim.config.account_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    ours = sim.config.our_number
    wanted = request.query.get("PhoneNumber")
    rows = [] if wanted not in (None, ours) else [{
        "sid": "PN" + hashlib.sha256(ours.encode()).hexdigest()[:32],
        "account_sid": sim.config.account_sid, "phone_number": ours,
        "friendly_name": ours, "sms_url": sim.config.number_sms_url or None,
        "sms_method": "POST", "sms_fallback_url": None, "status_callback": None,
        "capabilities": {"sms": True, "mms": True, "voice": True, "fax": False},
        "status": "in-use", "api_version": "2010-04-01"}]
    return web.json_response({
        "incoming_phone_numbers": rows, "page": 0, "page_size": 50, "start": 0,
        "end": max(0, len(rows) - 1), "first_page_uri": request.path_qs, "next_page_uri": None,
        "previous_page_uri": None, "uri": request.path_qs})


async def messaging_service_fetch(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    service = request.match_info["service"]
    if not sim.config.messaging_service_sid or service != sim.config.messaging_service_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    return web.json_response({
        "sid": service, "account_sid": sim.config.account_sid,
        "friendly_name": "Simulated service",
        "inbound_request_url": sim.config.service_inbound_url or None,
        "inbound_method": "POST", "use_inbound_webhook_on_number": False,
        "status_callback": sim.config.service_status_callback or None,
        "url": f"https://messaging.twilio.com/v1/Services/{service}", "links": {}})


async def verify_service_fetch(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    service = request.match_info["service"]
    if service != sim.config.verify_service_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    return web.json_response({
        "sid": service, "account_sid": sim.config.account_sid,
        "friendly_name": "Simulated Verify", "code_length": 6,
        "url": f"https://verify.twilio.com/v2/Services/{service}", "links": {}})


async def inbox(request: web.Request) -> web.Response:
    """Not Twilio: what a phone received (Verify codes), for tests and the demo driver."""
    return web.json_response(request.app[SIM].inbox.get(request.match_info["number"], []))


async def stats(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(request.app[SIM].stats))


def create_sim_app(sim: TwilioSim) -> web.Application:
    app = web.Application(middlewares=[twilio_auth])
    app[SIM] = sim

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await sim.start()
        yield
        await sim.close()

    app.cleanup_ctx.append(lifecycle)
    prefix = "/2010-04-01/Accounts/{account}"
    app.router.add_get(prefix + ".json", account_fetch)
    app.router.add_get(prefix + "/IncomingPhoneNumbers.json", incoming_numbers_list)
    app.router.add_get("/v1/Services/{service}", messaging_service_fetch)
    app.router.add_get("/v2/Services/{service}", verify_service_fetch)
    app.router.add_post(prefix + "/Messages.json", messages_create)
    app.router.add_get(prefix + "/Messages.json", messages_list)
    app.router.add_get(prefix + "/Messages/{sid}.json", messages_fetch)
    app.router.add_post(prefix + "/Messages/{sid}/Feedback.json", feedback_create)
    app.router.add_get("/v2/PhoneNumbers/{number}", lookup)
    app.router.add_post("/v2/Services/{service}/Verifications", verification_create)
    app.router.add_post("/v2/Services/{service}/VerificationCheck", verification_check)
    app.router.add_get("/sim/inbox/{number}", inbox)
    app.router.add_get("/sim/stats", stats)
    return app
