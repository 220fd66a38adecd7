"""The event vocabulary: what smsledger records, and the one place each event is built.

An event is a small frozen record. Its ``type`` names the fact, ``version`` the shape of its
payload, ``received_at`` is set here from the system's UTC clock, and ``idempotency_key`` is
derived from the content of the fact so that a duplicate (Twilio retries and duplicates
callbacks) or a retry on another ingester inserts nothing.

Every builder takes the fields exactly as the source sent them and keeps all of them in
``payload``, unknown ones included: Twilio adds parameters without notice.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

PayloadValue = str | list[str]
Form = Mapping[str, PayloadValue]


class EventType(enum.StrEnum):
    MESSAGE_SENT = "message.sent"
    MESSAGE_SEND_FAILED = "message.send_failed"
    MESSAGE_REFUSED = "message.refused"
    MESSAGE_STATUS = "message.status"
    MESSAGE_INBOUND = "message.inbound"
    CONTACT_OPTED_OUT = "contact.opted_out"
    CONTACT_OPTED_IN = "contact.opted_in"
    CONTACT_HELP = "contact.help_requested"
    CONTACT_SUPPRESSED = "contact.suppressed"
    CONTACT_UNSUPPRESSED = "contact.unsuppressed"
    VERIFICATION_STARTED = "verification.started"
    VERIFICATION_CHECKED = "verification.checked"
    NUMBER_LOOKED_UP = "number.looked_up"
    MESSAGE_PRICED = "message.priced"


class Source(enum.StrEnum):
    WEBHOOK = "webhook"
    API = "api"
    EVENT_STREAM = "event-stream"
    RECONCILE = "reconcile"
    BACKFILL = "backfill"
    ANALYTICS = "analytics"


class InvalidEvent(ValueError):
    """The input cannot become an event; the message says which field and why (safe to show)."""


# Twilio's default keywords: the whole body, trimmed, case-insensitive (TWILIO.md).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

# A message's state is derived by status rank, never by arrival order: the rank lives with the
# model that uses it (the status_key macro in schema/duckdb/model.sql).
TERMINAL_STATUSES = frozenset(
    {"delivered", "undelivered", "failed", "read", "canceled", "received",
     "partially_delivered"})


class Event(NamedTuple):
    """One fact, as stored: a frozen record (a named tuple: every webhook builds one, and it
    costs less than half of a frozen dataclass to make)."""
    type: EventType
    idempotency_key: str
    source: Source
    occurred_at: datetime
    received_at: datetime
    payload: Mapping[str, Any]
    message_sid: str | None = None
    phone: str | None = None
    status: str | None = None
    error_code: int | None = None
    version: int = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def _first(form: Form, name: str) -> str:
    value = form.get(name, "")
    if isinstance(value, list):
        return value[0] if value else ""
    return value


def _required(form: Form, *names: str) -> str:
    """The first of ``names`` that is present and non-blank (Twilio sends legacy copies)."""
    for name in names:
        value = _first(form, name).strip()
        if value:
            return value
    raise InvalidEvent(f"missing required field {names[0]}")


def parse_error_code(raw: str) -> int | None:
    """Twilio's ErrorCode as an integer; blank or non-numeric gives None (the raw value stays
    in the payload, so nothing is lost)."""
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return None


def message_status(*, sid: str, status: str, raw_code: str, phone: str | None,
                   source: Source, occurred_at: datetime, received_at: datetime,
                   payload: Mapping[str, Any]) -> Event:
    """``message.status``, however it arrived (callback, Event Streams, Messages API). The key
    is the fact's content, the same for every channel, so the second arrival stores nothing."""
    return Event(
        type=EventType.MESSAGE_STATUS,
        idempotency_key=f"message.status:{sid}:{status}:{raw_code}",
        source=source, occurred_at=occurred_at, received_at=received_at, payload=payload,
        message_sid=sid, phone=phone, status=status, error_code=parse_error_code(raw_code))


def message_inbound(*, sid: str, phone: str | None, source: Source, occurred_at: datetime,
                    received_at: datetime, payload: Mapping[str, Any]) -> Event:
    """``message.inbound``, keyed by the SID on every channel."""
    return Event(
        type=EventType.MESSAGE_INBOUND, idempotency_key=f"message.inbound:{sid}",
        source=source, occurred_at=occurred_at, received_at=received_at, payload=payload,
        message_sid=sid, phone=phone, status="received")


def _field(form: Form, name: str, *fallbacks: str) -> str:
    """``_first(form, name).strip()``; with ``fallbacks``, ``_required(form, name, ...)``.
    The usual field is one non-blank string: that case costs no further call."""
    value = form.get(name, "")
    if isinstance(value, str):
        value = value.strip()
        if value or not fallbacks:
            return value
    return _required(form, name, *fallbacks) if fallbacks else _first(form, name).strip()


def status_callback(form: Form, *, received_at: datetime | None = None) -> Event:
    """A classic StatusCallback POST → ``message.status``. Unknown statuses are kept."""
    now = received_at or datetime.now(UTC)
    return message_status(
        sid=_field(form, "MessageSid", "SmsSid"),
        status=_field(form, "MessageStatus", "SmsStatus").lower(),
        raw_code=_field(form, "ErrorCode"), phone=_field(form, "To") or None,
        source=Source.WEBHOOK, occurred_at=now, received_at=now, payload=dict(form))


def keyword_of(body: str, opt_out_type: str = "") -> EventType | None:
    """Which contact event an inbound body means: Twilio's ``OptOutType`` when it sent one
    (Advanced Opt-Out), else the default whole-body keywords."""
    kind = opt_out_type.strip().upper()
    if kind == "STOP":
        return EventType.CONTACT_OPTED_OUT
    if kind == "START":
        return EventType.CONTACT_OPTED_IN
    if kind == "HELP":
        return EventType.CONTACT_HELP
    word = body.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return EventType.CONTACT_OPTED_OUT
    if word in OPT_IN_KEYWORDS:
        return EventType.CONTACT_OPTED_IN
    if word in HELP_KEYWORDS:
        return EventType.CONTACT_HELP
    return None


def inbound_message(form: Form, *, received_at: datetime | None = None) -> list[Event]:
    """An inbound SMS → ``message.inbound``, plus the contact event its keyword means."""
    sid = _required(form, "MessageSid", "SmsSid")
    sender = _required(form, "From")
    now = received_at or utc_now()
    events = [message_inbound(sid=sid, phone=sender, source=Source.WEBHOOK, occurred_at=now,
                              received_at=now, payload=dict(form))]
    body = _first(form, "Body")
    kind = keyword_of(body, _first(form, "OptOutType"))
    if kind is not None:
        events.append(Event(
            type=kind,
            idempotency_key=f"{kind}:{sid}",
            source=Source.WEBHOOK,
            occurred_at=now,
            received_at=now,
            payload={"keyword": body.strip().upper(), "opt_out_type": _first(form, "OptOutType"),
                     "to": _first(form, "To"),
                     "messaging_service_sid": _first(form, "MessagingServiceSid")},
            message_sid=sid,
            phone=sender,
        ))
    return events


def _timestamp(value: datetime) -> str:
    """ISO 8601 with an offset; a naive time is UTC (as asyncpg takes one)."""
    text = value.isoformat()
    return text if value.tzinfo is not None else text + "+00:00"


def as_json_rows(events: Sequence[Event]) -> str:
    """The batch as one JSON array of rows, in the column order of ``schema/sql/append.sql``.

    One JSON text per batch instead of eleven typed arrays, unpacked by PostgreSQL with
    ``jsonb_array_elements``. Written by orjson, which also formats the times (RFC 3339 with
    the offset; a naive time as UTC): about a fifth of the standard library's cost per event.
    What orjson refuses (an integer over 64 bits, a lone surrogate, a type it does not know)
    goes through the standard library's encoder instead, as before: text that cannot be stored
    (NUL, a lone surrogate) still fails the statement as a data error (class 22) or as
    ``UnicodeEncodeError``."""
    rows: list[list[Any]] = [
        [e.idempotency_key, e.type, e.version, e.source, e.message_sid, e.phone, e.status,
         e.error_code, e.occurred_at, e.received_at, e.payload] for e in events]
    try:
        return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()
    except orjson.JSONEncodeError:
        pass
    for row in rows:
        row[8], row[9] = _timestamp(row[8]), _timestamp(row[9])
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


CATEGORIES = frozenset({"otp", "transactional", "marketing"})


def message_sent(*, sid: str, to: str, from_: str | None, messaging_service_sid: str | None,
                 category: str | None, tags: Sequence[str], segments: int | None,
                 media_count: int,
                 status: str | None, requested_at: datetime, source: Source,
                 received_at: datetime | None = None) -> Event:
    """A message handed to Twilio (by smsledger, or by the user's app and reported to us).
    Keyed by the SID alone: the same send reported twice, or by both paths, is one event."""
    return Event(
        type=EventType.MESSAGE_SENT,
        idempotency_key=f"message.sent:{sid}",
        source=source,
        occurred_at=requested_at,
        received_at=received_at or utc_now(),
        payload={"sid": sid, "to": to, "from": from_, "messaging_service_sid":
                 messaging_service_sid, "category": category, "tags": list(tags),
                 "segments": segments, "media_count": media_count, "initial_status": status},
        message_sid=sid,
        phone=to,
        status=status,
    )


def message_send_failed(*, request_id: str, to: str, from_: str | None,
                        messaging_service_sid: str | None, category: str, tags: Sequence[str],
                        error_code: int | None, error_message: str,
                        requested_at: datetime) -> Event:
    """Twilio refused to create the message (21610 opted out, 21211 invalid, ...)."""
    return Event(
        type=EventType.MESSAGE_SEND_FAILED,
        idempotency_key=f"message.send_failed:{request_id}",
        source=Source.API,
        occurred_at=requested_at,
        received_at=utc_now(),
        payload={"to": to, "from": from_, "messaging_service_sid": messaging_service_sid,
                 "category": category, "tags": list(tags), "error_code": error_code,
                 "error_message": error_message},
        phone=to,
        status="failed",
        error_code=error_code,
    )


def message_refused(*, request_id: str, to: str, reason: str, detail: str, since: datetime,
                    what: str, scope: str = "account") -> Event:
    """smsledger refused to send (opted out, suppressed) before calling Twilio; ``scope`` is
    the opt-out's (account, messaging_service:MG..., sender:+1...)."""
    now = utc_now()
    return Event(
        type=EventType.MESSAGE_REFUSED, idempotency_key=f"message.refused:{request_id}",
        source=Source.API, occurred_at=now, received_at=now,
        payload={"to": to, "reason": reason, "detail": detail, "since": since.isoformat(),
                 "what": what, "scope": scope},
        phone=to)


def verification(kind: EventType, *, verification_sid: str, to: str, channel: str, status: str,
                 requested_at: datetime, twilio_ms: float, request_id: str) -> Event:
    """``verification.started`` or ``verification.checked`` (each check is its own fact)."""
    key = (f"{kind}:{verification_sid}" if kind is EventType.VERIFICATION_STARTED
           else f"{kind}:{verification_sid}:{request_id}")
    return Event(
        type=kind, idempotency_key=key, source=Source.API, occurred_at=requested_at,
        received_at=utc_now(),
        payload={"verification_sid": verification_sid, "to": to, "channel": channel,
                 "status": status, "twilio_ms": round(twilio_ms, 1)},
        phone=to, status=status)


def suppression(kind: EventType, *, phone: str, reason: str, source: Source, key_suffix: str,
                evidence: Mapping[str, Any] | None = None) -> Event:
    """``contact.suppressed`` / ``contact.unsuppressed``: the send path refuses a suppressed
    number. ``key_suffix`` names the decision (a report version, a request id)."""
    now = utc_now()
    return Event(
        type=kind, idempotency_key=f"{kind}:{phone}:{key_suffix}", source=source,
        occurred_at=now, received_at=now,
        payload={"reason": reason, "evidence": dict(evidence or {})}, phone=phone)


def number_looked_up(*, phone: str, carrier_name: str | None, line_type: str | None,
                     mobile_country_code: str | None, mobile_network_code: str | None,
                     error_code: int | None, source: Source = Source.ANALYTICS) -> Event:
    """Twilio Lookup v2 ``line_type_intelligence`` for ``phone``: paid per request, so it is
    asked once and kept as an event (the rollup stays a pure function of the log)."""
    now = utc_now()
    return Event(
        type=EventType.NUMBER_LOOKED_UP, idempotency_key=f"number.looked_up:{phone}",
        source=source, occurred_at=now, received_at=now,
        payload={"carrier_name": carrier_name, "line_type": line_type,
                 "mobile_country_code": mobile_country_code,
                 "mobile_network_code": mobile_network_code, "error_code": error_code},
        phone=phone, error_code=error_code)


CLOUD_STATUS_PREFIX = "com.twilio.messaging.message."
CLOUD_INBOUND = "com.twilio.messaging.inbound-message.received"


def _cloud_time(event: Mapping[str, Any], data: Mapping[str, Any], now: datetime) -> datetime:
    for raw in (event.get("time"), data.get("timestamp")):
        if isinstance(raw, str):
            try:
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                continue
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
    return now


def cloud_event(event: Any, *, received_at: datetime | None = None) -> list[Event]:
    """One Event Streams CloudEvent → the same events a classic webhook gives, keyed by content
    so that a fact arriving by both channels (or retried: Event Streams is at-least-once) is
    stored once. Types outside the message vocabulary give no event."""
    if not isinstance(event, dict):
        raise InvalidEvent("each CloudEvent must be a JSON object")
    ce_id, ce_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(ce_id, str) or not ce_id or not isinstance(ce_type, str):
        raise InvalidEvent("a CloudEvent needs a string `id` and `type`")
    if not isinstance(data, dict):
        raise InvalidEvent(f"CloudEvent {ce_id}: `data` must be an object")
    now = received_at or utc_now()
    when = _cloud_time(event, data, now)
    payload = {"cloudevent_id": ce_id, "cloudevent_type": ce_type,
               "cloudevent_source": event.get("source"), **data}
    sid = data.get("messageSid")
    if ce_type.startswith(CLOUD_STATUS_PREFIX) or ce_type == CLOUD_INBOUND:
        if not isinstance(sid, str) or not sid:
            raise InvalidEvent(f"CloudEvent {ce_id}: data.messageSid is required")
    if ce_type == CLOUD_INBOUND:
        form: dict[str, PayloadValue] = {"MessageSid": str(sid),
                                         "From": str(data.get("from", "")),
                "To": str(data.get("to", "")), "Body": str(data.get("body", ""))}
        evs = inbound_message(form, received_at=now)
        return [e._replace(source=Source.EVENT_STREAM, occurred_at=when,
                           payload={**payload, **e.payload} if i else payload)
                for i, e in enumerate(evs)]
    if not ce_type.startswith(CLOUD_STATUS_PREFIX):
        return []
    status = str(data.get("messageStatus") or ce_type[len(CLOUD_STATUS_PREFIX):]).lower()
    raw_code = "" if data.get("errorCode") in (None, "") else str(data.get("errorCode"))
    found = [message_status(sid=str(sid), status=status, raw_code=raw_code,
                            phone=str(data.get("to") or "") or None, source=Source.EVENT_STREAM,
                            occurred_at=when, received_at=now, payload=payload)]
    # Not documented as a field of the status events, but used when a payload carries it.
    priced = message_priced_from(str(sid), data.get("price"),
                                 data.get("priceUnit") or data.get("price_unit"),
                                 source=Source.EVENT_STREAM, occurred_at=when)
    return found if priced is None else [*found, priced]


def _api_time(raw: Any) -> datetime | None:
    """A Messages API or Bulk Export time: a datetime, RFC 2822 or ISO 8601 text."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    text = str(raw)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise InvalidEvent(f"unreadable time {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def api_message(message: Mapping[str, Any], source: Source) -> list[Event]:
    """A Message resource (Messages API, or a Bulk Export line) → what it tells: the send (or
    the inbound message) and its current status, keyed like the webhook events so that
    whichever arrives second stores nothing."""
    sid = message.get("sid")
    if not isinstance(sid, str) or not sid:
        raise InvalidEvent("a message resource needs its `sid`")
    status = str(message.get("status") or "").lower() or None
    code = message.get("error_code")
    raw_code = "" if code in (None, "") else str(code)
    created = _api_time(message.get("date_created")) or utc_now()
    sent = _api_time(message.get("date_sent")) or created
    updated = _api_time(message.get("date_updated")) or sent
    direction = str(message.get("direction") or "outbound-api")
    now = utc_now()
    payload = {k: (v.isoformat() if isinstance(v, datetime) else v)
               for k, v in message.items() if k not in ("body", "subresource_uris")}
    if direction == "inbound":
        return [message_inbound(sid=sid, phone=message.get("from"), source=source,
                                occurred_at=sent, received_at=now, payload=payload)]
    segments = message.get("num_segments")
    evs = [message_sent(sid=sid, to=str(message.get("to") or ""), from_=message.get("from"),
                        messaging_service_sid=message.get("messaging_service_sid"),
                        category=None, tags=[], segments=int(segments) if segments else None,
                        media_count=int(message.get("num_media") or 0), status=None,
                        requested_at=created, source=source, received_at=now)]
    if status:
        evs.append(message_status(sid=sid, status=status, raw_code=raw_code,
                                  phone=message.get("to"), source=source, occurred_at=updated,
                                  received_at=now, payload=payload))
    priced = message_priced_from(sid, message.get("price"), message.get("price_unit"),
                                 source=source, occurred_at=updated)
    return evs if priced is None else [*evs, priced]


def price_amount(raw: Any) -> Decimal | None:
    """Twilio's ``price`` (a string such as ``"-0.00790"``: negative, money out) as the amount
    paid; None while Twilio has not filled it in (null, blank) or when it is unreadable."""
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return abs(value) if value.is_finite() else None


def message_priced(*, sid: str, amount: Decimal, raw_price: str, price_unit: str,
                   source: Source, occurred_at: datetime | None = None) -> Event:
    """Twilio's final price of a message (it arrives up to 24 h after sending, with no webhook:
    polled from the Messages API, or read from a Bulk Export line or an Event Streams payload).
    Keyed by the SID and the amount: the same price seen twice is one fact; a price Twilio
    revised is a new one, and the latest wins in the model."""
    now = utc_now()
    text = format(amount.normalize(), "f")
    return Event(
        type=EventType.MESSAGE_PRICED, idempotency_key=f"message.priced:{sid}:{text}",
        source=source, occurred_at=occurred_at or now, received_at=now,
        payload={"sid": sid, "price": raw_price, "price_unit": price_unit.upper(),
                 "amount": text},
        message_sid=sid)


def message_priced_from(sid: str, price: Any, price_unit: Any, *, source: Source,
                        occurred_at: datetime | None = None) -> Event | None:
    """``message.priced`` when a resource or payload carries a price, else None."""
    amount = price_amount(price)
    if amount is None:
        return None
    return message_priced(sid=sid, amount=amount, raw_price=str(price),
                          price_unit=str(price_unit or "USD"), source=source,
                          occurred_at=occurred_at)
