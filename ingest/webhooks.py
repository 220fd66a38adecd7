"""Twilio's webhooks: status callbacks and inbound messages.

Each request is checked in the order that keeps the store clean and answers the cheapest
question first: content type (415), size (413), well-formed UTF-8 form without NUL bytes (400),
the ``X-Twilio-Signature`` over the public URL (403), the fields the event needs (400). Only then
are its events appended, and the answer goes out after they are durable.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from twilio.twiml.messaging_response import MessagingResponse

from ingest.append import GroupCommitAppender
from ingest.forms import FORM_TYPE, BadRequest, parse_form
from ingest.metrics import IngestMetrics
from ingest.signature import WebhookSigner, algorithm_of
from schema import events
from schema.events import Event, EventType, InvalidEvent, PayloadValue
from schema.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", IngestMetrics)
SIGNER = web.AppKey("signer", WebhookSigner)
APPENDER = web.AppKey("appender", GroupCommitAppender)

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"


def public_url(request: web.Request) -> str:
    """The URL Twilio signed: the configured public base plus the path and query as sent."""
    return request.app[SETTINGS].public_url + request.raw_path


API_MAX_BODY_BYTES = 1 << 20  # the /v1 JSON API: up to 1000 sends in one request


async def read_body(request: web.Request, content_type: str, limit: int | None = None) -> bytes:
    """The raw body, once its type and size are right (415, 413 otherwise)."""
    limit = request.app[SETTINGS].max_body_bytes if limit is None else limit
    if request.content_type != content_type:
        raise BadRequest(415, "content_type",
                         f"expected Content-Type {content_type}, got {request.content_type!r}")
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(413, "too_large",
                         f"body of {request.content_length} bytes is over the limit of {limit}")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, "too_large", f"body is over the limit of {limit} bytes") from None
    if len(body) > limit:
        raise BadRequest(413, "too_large", f"body is over the limit of {limit} bytes")
    return body


async def signed_form(request: web.Request) -> dict[str, PayloadValue]:
    """The request's form fields, once its Twilio signature is proven."""
    body = await read_body(request, FORM_TYPE)
    fields, _ = parse_form(body)
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise BadRequest(403, "signature_missing", f"missing {SIGNATURE_HEADER}")
    algorithm = algorithm_of(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not request.app[SIGNER].verify(public_url(request), fields, signature, algorithm):
        raise BadRequest(403, "signature_invalid",
                         f"{SIGNATURE_HEADER} does not match (is SMSLEDGER_PUBLIC_URL the URL "
                         "Twilio calls?)")
    return fields


async def store(request: web.Request, evs: Sequence[Event]) -> list[bool]:
    return await request.app[APPENDER].append(evs)


async def status_callback(request: web.Request) -> web.Response:
    fields = await signed_form(request)
    try:
        event = events.status_callback(fields)
    except InvalidEvent as exc:
        raise BadRequest(400, "missing_field", str(exc)) from None
    await store(request, [event])
    return web.Response(status=200)


async def inbound_message(request: web.Request) -> web.Response:
    fields = await signed_form(request)
    try:
        evs = events.inbound_message(fields)
    except InvalidEvent as exc:
        raise BadRequest(400, "missing_field", str(exc)) from None
    await store(request, evs)
    settings = request.app[SETTINGS]
    replies = {EventType.CONTACT_OPTED_OUT: settings.opt_out_reply,
               EventType.CONTACT_OPTED_IN: settings.opt_in_reply,
               EventType.CONTACT_HELP: settings.help_reply}
    twiml = MessagingResponse()
    for e in evs[1:]:
        if replies.get(e.type):
            twiml.message(replies[e.type])
    return web.Response(text=str(twiml), content_type="text/xml")

