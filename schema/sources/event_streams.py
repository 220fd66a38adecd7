"""Twilio Event Streams: CloudEvents as the same events the webhooks give, keyed alike."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schema.events import (
    Event,
    InvalidEvent,
    PayloadValue,
    Source,
    message_priced_from,
    message_status,
    utc_bounded,
    utc_now,
)
from schema.sources.webhooks import inbound_message

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
                return utc_bounded(parsed)
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
