"""Inbound messages, and the consent changes they carry (STOP, START and the other keywords),
applied only when they hold up.

A signed inbound webhook can be replayed (Twilio's signature has no time in it), so a consent
change is applied only when it is newer than the number's current consent state and, when
Twilio credentials exist (``TWILIO_ACCOUNT_SID``), only after the Message is fetched from
Twilio's API and its From, To and Body match the webhook's. The message itself is always kept.

When Twilio cannot be asked (unreachable, too slow, our credentials refused): an opt-out is
applied anyway, with a warning, because texting someone who sent STOP is the one harm that
cannot be undone; an opt-in waits (``message.inbound`` is stored, the number stays opted out)
and ``smsledger reconcile`` (the worker's reconciliation) verifies and applies it later.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.messaging_response import MessagingResponse

from ingest.append import OUTAGE_ERRORS
from ingest.forms import BadRequest
from ingest.ops import POOL
from ingest.send import TWILIO
from ingest.webhooks import APPENDER, SETTINGS, signed_form
from schema import store
from schema.events import Event, EventType, InvalidEvent, PayloadValue
from schema.sources import webhooks as forms_in
from schema.sources.messages_api import resource_time
from twilio_api.client import UNREACHABLE

log = logging.getLogger("smsledger.ingest.consent")

CONSENT = frozenset({EventType.CONTACT_OPTED_OUT, EventType.CONTACT_OPTED_IN})
# Twilio gives a webhook 15 s; the fetch must leave time for the commit.
FETCH_TIMEOUT_S = 5.0


async def inbound_message(request: web.Request) -> web.Response:
    appender = request.app[APPENDER]
    if appender.should_defer():  # as in webhooks.status_callback
        await asyncio.sleep(0)
    fields = await signed_form(request)
    try:
        evs = forms_in.inbound_message(fields)
    except InvalidEvent as exc:
        raise BadRequest(400, "missing_field", str(exc)) from None
    if len(evs) > 1 and evs[1].type in CONSENT:
        evs = await settled(request, fields, evs[0], evs[1])
    await appender.append(evs)
    settings = request.app[SETTINGS]
    replies = {EventType.CONTACT_OPTED_OUT: settings.opt_out_reply,
               EventType.CONTACT_OPTED_IN: settings.opt_in_reply,
               EventType.CONTACT_HELP: settings.help_reply}
    twiml = MessagingResponse()
    for e in evs[1:]:
        if replies.get(e.type):
            twiml.message(replies[e.type])
    return web.Response(text=str(twiml), content_type="text/xml")


async def settled(request: web.Request, fields: dict[str, PayloadValue], message: Event,
                  change: Event) -> list[Event]:
    """``[message, change]`` when the consent change holds up, ``[message]`` when it is stale
    or must wait; 400 when Twilio's record of the message contradicts the webhook."""
    settings = request.app[SETTINGS]
    sid = message.message_sid
    if settings.twilio_account_sid:
        resource = await fetch_message(request, str(sid))
        if resource is None:
            if change.type == EventType.CONTACT_OPTED_IN:
                log.warning("opt-in %s not applied yet: Twilio could not confirm it; "
                            "reconciliation will", sid)
                return [message]
            log.warning("opt-out %s applied without Twilio's confirmation (unreachable)", sid)
        else:
            mismatch = mismatched(resource, fields)
            if mismatch:
                raise BadRequest(400, "consent_unconfirmed",
                                 f"Twilio's message {sid} does not match this webhook's "
                                 f"{mismatch}; nothing was stored")
            when = resource_time(resource)
            if when is not None:
                change = change._replace(occurred_at=when)
    latest = await consent_since(request, str(change.phone))
    if latest is not None and change.occurred_at < latest:
        log.debug("consent change %s is older than the number's current state: not applied",
                  sid)
        return [message]
    return [message, change]


async def fetch_message(request: web.Request, sid: str) -> dict[str, Any] | None:
    """The Message resource's fields we check, or None when Twilio cannot say (unreachable,
    slow, 5xx, our credentials refused). 400 when Twilio has no such message."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            found = await request.app[TWILIO].messages(sid).fetch_async()
    except TwilioRestException as exc:
        if exc.status == 404:
            raise BadRequest(400, "consent_unconfirmed",
                             f"Twilio has no message {sid}; nothing was stored") from None
        log.warning("Twilio answered %s to the fetch of inbound %s", exc.status, sid)
        return None
    except UNREACHABLE as exc:
        log.warning("Twilio unreachable to confirm inbound %s (%s)", sid, type(exc).__name__)
        return None
    return {"from": found.from_, "to": found.to, "body": found.body,
            "direction": found.direction, "date_sent": found.date_sent,
            "date_created": found.date_created}


def mismatched(resource: dict[str, Any], fields: dict[str, PayloadValue]) -> str:
    """The first of direction, From, To, Body in which Twilio's record differs, or ''."""
    if resource["direction"] != "inbound":
        return "direction"
    for name in ("From", "To", "Body"):
        if (resource[name.lower()] or "") != fields.get(name, ""):
            return name
    return ""


async def consent_since(request: web.Request, phone: str) -> datetime | None:
    """When the number's current consent state began; None if it has none, or if the store
    cannot say now (the change is then applied: it goes to the spool like everything else)."""
    settings = request.app[SETTINGS]
    try:
        async with request.app[POOL].acquire(timeout=settings.db_timeout_s) as conn:
            return await asyncio.wait_for(store.consent_since(conn, phone),
                                          settings.db_timeout_s)
    except OUTAGE_ERRORS:
        log.warning("consent state of an inbound number unknown (event store unavailable)")
        return None
