"""The /v1 API: send through Twilio, record sends made elsewhere, and Verify (OTP).

Every route needs ``Authorization: Bearer $SMSLEDGER_API_KEY`` (sending spends money). Input is
checked before anything reaches Twilio; a refused recipient (opted out, suppressed) gets 409
before Twilio is called. What Twilio accepted or refused is appended as an event; when Twilio
cannot be reached the caller gets 502 and nothing is stored.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from ingest import fraud
from ingest.append import OUTAGE_ERRORS, StoreUnavailable
from ingest.forms import BadRequest, load_json
from ingest.ops import POOL
from ingest.webhooks import API_MAX_BODY_BYTES, APPENDER, SETTINGS, read_body
from schema import events, store
from schema.events import CATEGORIES, Event, EventType, InvalidEvent, Source, utc_bounded
from twilio_api.client import UNREACHABLE

log = logging.getLogger("smsledger.ingest.send")

TWILIO = web.AppKey("twilio", Client)

MAX_BODY_CHARS = 1600
MAX_BATCH = 1000


def utc_time(value: datetime, name: str) -> datetime:
    """``value`` in UTC; 400 when it is out of what can be stored (9999-12-31T23:59:59-14:00 is
    past the year 9999 in UTC)."""
    try:
        return utc_bounded(value)
    except InvalidEvent as exc:
        raise BadRequest(400, "invalid_field", f"{name}: {exc}") from None


def require_api_key(request: web.Request) -> None:
    key = request.app[SETTINGS].api_key.reveal()
    given = request.headers.get("Authorization", "")
    if not key:
        raise BadRequest(401, "api_key", "the /v1 API is off: SMSLEDGER_API_KEY is not set")
    scheme, _, token = given.partition(" ")
    # A header holding a byte outside ASCII (0xFF arrives as a lone surrogate) is no key of ours;
    # it must not reach encode().
    if (scheme.lower() != "bearer" or not token.isascii()
            or not hmac.compare_digest(token.strip().encode(), key.encode())):
        raise BadRequest(401, "api_key", "missing or wrong API key "
                                         "(Authorization: Bearer <SMSLEDGER_API_KEY>)")


async def json_body(request: web.Request) -> Any:
    require_api_key(request)
    return load_json(await read_body(request, "application/json", API_MAX_BODY_BYTES))


def _field(obj: Any, name: str, *, where: str = "") -> Any:
    if not isinstance(obj, dict):
        raise BadRequest(400, "invalid_field", f"{where}expected a JSON object")
    return obj.get(name)


def e164(value: Any, name: str = "to", where: str = "") -> str:
    """``value`` as a valid E.164 number, or a 400 that says why."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(400, "invalid_field", f"{where}`{name}` is required (E.164, e.g. "
                                               "+14155550123)")
    text = value.strip()
    if not text.startswith("+"):
        raise BadRequest(400, "invalid_field",
                         f"{where}`{name}` must be in E.164 form with a leading + and country "
                         f"code, got {text!r}")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise BadRequest(400, "invalid_field",
                         f"{where}`{name}` is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise BadRequest(400, "invalid_field",
                         f"{where}`{name}` {text!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def category_of(value: Any, where: str = "") -> str:
    category = "transactional" if value is None else value
    if category not in CATEGORIES:
        raise BadRequest(400, "invalid_field", f"{where}`category` must be one of "
                                               f"{', '.join(sorted(CATEGORIES))}, got {value!r}")
    return str(category)


def tags_of(value: Any, where: str = "") -> list[str]:
    if value is None:
        return []
    if (not isinstance(value, list) or len(value) > 20 or
            not all(isinstance(t, str) and 0 < len(t) <= 100 for t in value)):
        raise BadRequest(400, "invalid_field",
                         f"{where}`tags` must be a list of at most 20 strings of 1-100 chars")
    return list(value)


def optional_str(obj: Any, name: str, where: str = "") -> str | None:
    value = _field(obj, name, where=where)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise BadRequest(400, "invalid_field", f"{where}`{name}` must be a string")
    return value


def scope_words(scope: str) -> str:
    """A Block's scope as the 409 says it: "account", "messaging service MG...", "sender +1..."."""
    kind, _, value = scope.partition(":")
    return {"messaging_service": f"messaging service {value}",
            "sender": f"sender {value}"}.get(kind, "account")


async def check_recipient(request: web.Request, to: str, what: str, *,
                          messaging_service_sid: str | None = None,
                          sender: str | None = None) -> None:
    """409 (and a ``message.refused`` event) when ``to`` opted out or was suppressed.

    With SMSLEDGER_OPT_OUT_SCOPE=sender, an opt-out refuses only the sends of its scope (the
    Messaging Service, or the sender number, the STOP reached); a send with neither (Verify,
    whose senders are Twilio's) is checked against every scope."""
    settings = request.app[SETTINGS]
    timeout = settings.db_timeout_s
    try:
        async with request.app[POOL].acquire(timeout=timeout) as conn:
            if settings.opt_out_scope == "sender":
                known = bool(messaging_service_sid or sender)
                block = await asyncio.wait_for(store.scoped_send_block(
                    conn, to, messaging_service_sid=(messaging_service_sid or "") if known
                    else None, sender=(sender or "") if known else None), timeout)
            else:
                block = await asyncio.wait_for(store.send_block(conn, to), timeout)
    except OUTAGE_ERRORS:
        # Fail closed: texting someone who opted out is worse than not texting them now.
        raise BadRequest(503, "store_unavailable", "cannot check opt-outs and suppressions "
                         "(the event store is unavailable); nothing was sent") from None
    if block is None:
        return
    await request.app[APPENDER].append([events.message_refused(
        request_id=str(uuid.uuid4()), to=to, reason=block.reason, detail=block.detail,
        since=block.since, what=what, scope=block.scope)])
    scope = scope_words(block.scope)
    text = ("opted out" + (f" ({block.detail})" if block.detail else "") +
            ("" if scope == "account" else f" of {scope}")
            if block.reason == "opted_out" else f"suppressed: {block.detail}")
    raise BadRequest(409, block.reason,
                     f"{to} is {text} since {block.since.isoformat()}; nothing was sent",
                     extra={"reason": block.reason, "since": block.since.isoformat(),
                            "detail": block.detail, "scope": block.scope})


async def append_or_warn(request: web.Request, evs: list[Event]) -> bool:
    """Record what Twilio already did. The message is out either way, so a store failure must
    not become an error the caller would retry (and send twice): it is logged and reported as
    ``recorded: false``; reconciliation against the Messages API recovers it."""
    try:
        await request.app[APPENDER].append(evs)
    except StoreUnavailable:
        log.error("Twilio accepted %s but the event store is unavailable; reconcile will "
                  "recover it", evs[0].message_sid or "a request")
        return False
    return True


def twilio_unreachable(exc: BaseException) -> BadRequest:
    log.warning("Twilio unreachable: %s", type(exc).__name__)
    return BadRequest(502, "twilio_unreachable",
                      "Twilio could not be reached; nothing was sent or stored "
                      f"({type(exc).__name__})")


async def send_message(request: web.Request) -> web.Response:
    data = await json_body(request)
    to = e164(_field(data, "to"))
    body = _field(data, "body")
    media = _field(data, "media_urls")
    media = [] if media is None else media     # false or 0 is not "no media": a 400 below
    if not isinstance(media, list) or len(media) > 10 or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) for u in media):
        raise BadRequest(400, "invalid_field", "`media_urls` must be a list of at most 10 "
                                               "http(s) URLs")
    if body is None:
        body = ""
    if not isinstance(body, str) or (not body.strip() and not media):
        raise BadRequest(400, "invalid_field", "`body` is required and must not be empty")
    if len(body) > MAX_BODY_CHARS:
        raise BadRequest(400, "invalid_field",
                         f"`body` is {len(body)} characters; the limit is {MAX_BODY_CHARS}")
    category = category_of(_field(data, "category"))
    tags = tags_of(_field(data, "tags"))
    settings = request.app[SETTINGS]
    service = optional_str(data, "messaging_service_sid")
    sender = optional_str(data, "from") or (None if service else settings.twilio_phone_number)
    if not sender and not service:
        raise BadRequest(400, "invalid_field", "no sender: give `from` or "
                                               "`messaging_service_sid`, or set "
                                               "TWILIO_PHONE_NUMBER")
    await check_recipient(request, to, "message", messaging_service_sid=service, sender=sender)
    if category == "otp":
        await fraud.check(request, to, "message")

    kwargs: dict[str, Any] = {"to": to, "body": body,
                              "status_callback": settings.public_url + "/twilio/status"}
    if sender:
        kwargs["from_"] = sender
    if service:
        kwargs["messaging_service_sid"] = service
    if media:
        kwargs["media_url"] = media
    if category == "otp":
        # Twilio then takes Message Feedback (/v1/otp/confirm) for its OTP conversion reports.
        kwargs["provide_feedback"] = True
    requested_at = datetime.now(UTC)
    try:
        message = await request.app[TWILIO].messages.create_async(**kwargs)
    except TwilioRestException as exc:
        if exc.status >= 500:
            raise twilio_unreachable(exc) from None
        failed = events.message_send_failed(
            request_id=str(uuid.uuid4()), to=to, from_=sender, messaging_service_sid=service,
            category=category, tags=tags, error_code=exc.code, error_message=str(exc.msg),
            requested_at=requested_at)
        await request.app[APPENDER].append([failed])
        raise BadRequest(exc.status if 400 <= exc.status < 500 else 400, "twilio_refused",
                         f"Twilio refused the message: {exc.msg}",
                         extra={"twilio_code": exc.code}) from None
    except UNREACHABLE as exc:
        raise twilio_unreachable(exc) from None
    segments = int(message.num_segments) if message.num_segments else None
    sent = events.message_sent(
        sid=message.sid, to=to, from_=message.from_ or sender,
        messaging_service_sid=message.messaging_service_sid or service, category=category,
        tags=tags, segments=segments, media_count=len(media), status=message.status,
        requested_at=requested_at, source=Source.API)
    recorded = await append_or_warn(request, [sent])
    return web.json_response({"sid": message.sid, "status": message.status, "to": to,
                              "from": message.from_ or sender, "segments": segments,
                              "category": category, "recorded": recorded}, status=201)


async def record_sent(request: web.Request) -> web.Response:
    data = await json_body(request)
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_BATCH:
        raise BadRequest(400, "invalid_field", f"send 1 to {MAX_BATCH} messages")
    evs = []
    for i, item in enumerate(items):
        where = f"item {i}: " if isinstance(data, list) else ""
        sid = _field(item, "sid", where=where)
        if not isinstance(sid, str) or not sid.startswith(("SM", "MM")) or len(sid) != 34:
            raise BadRequest(400, "invalid_field", f"{where}`sid` must be a Twilio message SID "
                                                   "(SM or MM and 32 hex digits)")
        sent_at_raw = _field(item, "sent_at", where=where)
        sent_at = datetime.now(UTC)
        if sent_at_raw is not None:
            try:
                sent_at = datetime.fromisoformat(str(sent_at_raw).replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(400, "invalid_field",
                                 f"{where}`sent_at` must be an ISO 8601 time") from None
            if sent_at.tzinfo is None:
                raise BadRequest(400, "invalid_field",
                                 f"{where}`sent_at` needs a time zone (e.g. Z or +00:00)")
            sent_at = utc_time(sent_at, f"{where}`sent_at`")
        evs.append(events.message_sent(
            sid=sid, to=e164(_field(item, "to"), where=where),
            from_=optional_str(item, "from", where), messaging_service_sid=optional_str(
                item, "messaging_service_sid", where),
            category=category_of(_field(item, "category"), where),
            tags=tags_of(_field(item, "tags"), where), segments=None, media_count=0,
            status=None, requested_at=sent_at, source=Source.API))
    flags = await request.app[APPENDER].append(evs)
    return web.json_response({"stored": sum(flags), "duplicates": len(flags) - sum(flags)})


def verify_service(request: web.Request) -> Any:
    sid = request.app[SETTINGS].twilio_verify_service_sid
    if not sid:
        raise BadRequest(503, "verify_off", "Verify is not configured: set "
                                            "TWILIO_VERIFY_SERVICE_SID")
    return request.app[TWILIO].verify.v2.services(sid)


async def verify_start(request: web.Request) -> web.Response:
    data = await json_body(request)
    to = e164(_field(data, "to"))
    channel = _field(data, "channel")
    channel = "sms" if channel is None else channel   # false or "" is not "sms": a 400 below
    if channel not in ("sms", "call", "email", "whatsapp"):
        raise BadRequest(400, "invalid_field", "`channel` must be sms, call, email or whatsapp")
    service = verify_service(request)
    await check_recipient(request, to, "verification")
    await fraud.check(request, to, "verification")
    return await _verify(request, EventType.VERIFICATION_STARTED, to, channel,
                         service.verifications.create_async(to=to, channel=channel))


async def verify_check(request: web.Request) -> web.Response:
    data = await json_body(request)
    to = e164(_field(data, "to"))
    code = _field(data, "code")
    if not isinstance(code, str) or not code.isdigit() or not 4 <= len(code) <= 10:
        raise BadRequest(400, "invalid_field", "`code` must be 4 to 10 digits")
    service = verify_service(request)
    return await _verify(request, EventType.VERIFICATION_CHECKED, to, "sms",
                         service.verification_checks.create_async(to=to, code=code))


async def _verify(request: web.Request, kind: EventType, to: str, channel: str,
                  call: Any) -> web.Response:
    requested_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        result = await call
    except TwilioRestException as exc:
        if exc.status >= 500:
            raise twilio_unreachable(exc) from None
        if kind is EventType.VERIFICATION_CHECKED and exc.status == 404:
            raise BadRequest(404, "no_verification", f"no pending verification for {to} "
                                                     "(expired, approved or never started)",
                             ) from None
        raise BadRequest(400, "twilio_refused", f"Twilio refused: {exc.msg}",
                         extra={"twilio_code": exc.code}) from None
    except UNREACHABLE as exc:
        raise twilio_unreachable(exc) from None
    event = events.verification(kind, verification_sid=result.sid, to=to,
                                channel=result.channel or channel, status=result.status,
                                requested_at=requested_at,
                                twilio_ms=(time.perf_counter() - started) * 1000,
                                request_id=str(uuid.uuid4()))
    recorded = await append_or_warn(request, [event])
    return web.json_response({"sid": result.sid, "status": result.status, "to": to,
                              "recorded": recorded},
                             status=201 if kind is EventType.VERIFICATION_STARTED else 200)
