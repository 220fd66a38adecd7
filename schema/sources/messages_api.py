"""Twilio's Message resources (the Messages API, Bulk Export lines) as events, keyed like the
webhook events so that whichever arrives second stores nothing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schema.events import (
    Event,
    EventType,
    InvalidEvent,
    Source,
    keyword_of,
    message_inbound,
    message_priced_from,
    message_sent,
    message_status,
    utc_now,
)


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


def resource_time(message: Mapping[str, Any]) -> datetime | None:
    """When a Message resource was sent (else created), or None if it says neither."""
    return _api_time(message.get("date_sent")) or _api_time(message.get("date_created"))


def consent_from_resource(message: Mapping[str, Any], source: Source) -> Event | None:
    """The consent change (opt-out or opt-in) an inbound Message resource carries, keyed like
    the webhook's (whichever arrives second stores nothing), or None. Its time is Twilio's."""
    sid, sender = message.get("sid"), message.get("from")
    if message.get("direction") != "inbound" or not isinstance(sid, str) or not sender:
        return None
    body = str(message.get("body") or "")
    kind = keyword_of(body)
    if kind not in (EventType.CONTACT_OPTED_OUT, EventType.CONTACT_OPTED_IN):
        return None
    now = utc_now()
    return Event(type=kind, idempotency_key=f"{kind}:{sid}", source=source,
                 occurred_at=resource_time(message) or now, received_at=now,
                 payload={"keyword": body.strip().upper(), "opt_out_type": "",
                          "to": str(message.get("to") or ""),
                          "messaging_service_sid": str(message.get("messaging_service_sid")
                                                       or "")},
                 message_sid=sid, phone=str(sender))


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
