"""The event vocabulary: what smsledger records, and the one place each event is built.

An event is a small frozen record. Its ``type`` names the fact, ``version`` the shape of its
payload, ``received_at`` is set here from the system's UTC clock, and ``idempotency_key`` is
derived from the content of the fact so that a duplicate (Twilio retries and duplicates
callbacks) or a retry on another ingester inserts nothing.

Every builder takes the fields exactly as the source sent them and keeps all of them in
``payload``, unknown ones included: Twilio adds parameters without notice.

This module is the vocabulary and the builders. What each source sends is translated in a
module of its own under ``schema/sources`` (webhooks, Event Streams, the Messages API); the
batch encoding for PostgreSQL is in ``schema/store.py``. The old names stay importable from
here (``__getattr__`` below) for code written before the split.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

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
    OTP_CONFIRMED = "otp.confirmed"
    ALERT_OPENED = "alert.opened"
    ALERT_RESOLVED = "alert.resolved"
    ALERT_NOTIFIED = "alert.notified"
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


# Twilio's default opt-out, opt-in and help keywords: the whole body, trimmed,
# case-insensitive.
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


def timestamp_text(value: datetime) -> str:
    """ISO 8601 with an offset; a naive time is UTC (as asyncpg takes one)."""
    text = value.isoformat()
    return text if value.tzinfo is not None else text + "+00:00"


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


def otp_confirmed(*, sid: str, phone: str | None, outcome: str,
                  requested_at: datetime) -> Event:
    """The user used the OTP that message ``sid`` carried, and Twilio's Message Feedback was
    told so (``outcome=confirmed``). One per message: the key is the SID."""
    return Event(
        type=EventType.OTP_CONFIRMED, idempotency_key=f"otp.confirmed:{sid}",
        source=Source.API, occurred_at=requested_at, received_at=utc_now(),
        payload={"sid": sid, "outcome": outcome}, message_sid=sid, phone=phone,
        status=outcome)


# What PostgreSQL's timestamptz and DuckDB hold alike, with room: a time outside is refused.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def utc_bounded(value: datetime) -> datetime:
    """An aware time in UTC; InvalidEvent when it is before 1900 or after 9000 (UTC), or past
    the calendar's ends once the offset is applied (9999-12-31T23:59:59-14:00)."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(f"time {value.isoformat()} is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise InvalidEvent(f"time {value.isoformat()} is out of range (1900 to 9000)")
    return utc


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


def alert_transition(kind: EventType, *, alert_id: str, rule: str, segment: Mapping[str, Any],
                     window_s: float, window_end: datetime, observed: float | None,
                     baseline: float | None, sample: int, evidence: Mapping[str, Any],
                     text: str, opened_at: datetime | None = None) -> Event:
    """``alert.opened`` or ``alert.resolved`` for one alert. ``alert_id`` names the rule, the
    segment and which opening of that pair this is (``rule|segment|n``): two evaluators that
    see the same change at once (the worker and ``smsledger alerts check``) build the same key,
    so the log gets one event, never two open alerts for one rule and segment."""
    now = utc_now()
    return Event(
        type=kind, idempotency_key=f"{kind}:{alert_id}", source=Source.ANALYTICS,
        occurred_at=now, received_at=now,
        payload={"alert_id": alert_id, "rule": rule, "segment": dict(segment),
                 "window_s": window_s, "window_end": timestamp_text(window_end),
                 "observed": observed, "baseline": baseline, "sample": sample,
                 "evidence": dict(evidence), "text": text,
                 "opened_at": timestamp_text(opened_at or now)})


def alert_notified(*, transition_key: str, channel: str, alert_id: str,
                   answer: str) -> Event:
    """A transition's notification was accepted (a 2xx, or the SMTP server's 250) on
    ``channel``: appended only afterwards, so a crash in between sends it again (at least
    once; receivers dedupe by the ``id`` the payload carries)."""
    now = utc_now()
    return Event(
        type=EventType.ALERT_NOTIFIED,
        idempotency_key=f"{EventType.ALERT_NOTIFIED}:{channel}:{transition_key}",
        source=Source.ANALYTICS, occurred_at=now, received_at=now,
        payload={"transition": transition_key, "channel": channel, "alert_id": alert_id,
                 "answer": answer})


# Names that moved to the source translators and the store in the split of this module, so
# that ``from schema.events import status_callback`` keeps working. Resolved on first use:
# importing them here at the top would be circular (they import the vocabulary above).
_MOVED = {
    "status_callback": "schema.sources.webhooks", "inbound_message": "schema.sources.webhooks",
    "cloud_event": "schema.sources.event_streams",
    "CLOUD_STATUS_PREFIX": "schema.sources.event_streams",
    "CLOUD_INBOUND": "schema.sources.event_streams",
    "api_message": "schema.sources.messages_api", "resource_time": "schema.sources.messages_api",
    "consent_from_resource": "schema.sources.messages_api",
    "as_json_rows": "schema.store",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'schema.events' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
