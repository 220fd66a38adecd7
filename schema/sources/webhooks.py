"""Twilio's classic webhooks (form POSTs) as events: status callbacks and inbound messages."""

from __future__ import annotations

from datetime import UTC, datetime

from schema.events import (
    Event,
    Form,
    InvalidEvent,
    Source,
    keyword_of,
    message_inbound,
    message_status,
    utc_now,
)


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
