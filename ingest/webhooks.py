"""Twilio's webhooks: status callbacks and Event Streams (inbound messages: ``ingest.consent``),
and the checks every webhook passes.

Each request is checked in the order that keeps the store clean and answers the cheapest
question first: content type (415), size (413), well-formed UTF-8 form without NUL bytes (400),
the ``X-Twilio-Signature`` over the public URL (403), the fields the event needs (400). Only then
are its events appended, and the answer goes out after they are durable.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import hdrs, web

from ingest.append import GroupCommitAppender
from ingest.forms import FORM_TYPE, BadRequest, check_twilio_shapes, load_json, parse_form
from ingest.metrics import IngestMetrics
from ingest.signature import UnknownKey, WebhookVerifier
from schema.events import Event, InvalidEvent, PayloadValue
from schema.settings import Settings
from schema.sources import webhooks as forms_in
from schema.sources.event_streams import cloud_event

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", IngestMetrics)
SIGNER = web.AppKey("signer", WebhookVerifier)
APPENDER = web.AppKey("appender", GroupCommitAppender)

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

log = logging.getLogger("smsledger.ingest.webhooks")


def signature_ok(request: web.Request, url: str, params: Mapping[str, str | Sequence[str]],
                 signature: str) -> bool:
    """Whether one of the configured secrets signed the request (counted by which one); 403
    when the SharedKey id it names is not configured (logged with the id, never a secret)."""
    app = request.app
    try:
        matched = app[SIGNER].verify(url, params, signature,
                                     request.headers.get(SIGNATURE_SETTINGS_HEADER))
    except UnknownKey as exc:
        key_id = exc.key_id[:64]  # a header: bounded and repr'd, so it cannot forge log lines
        log.warning("webhook to %s names SharedKey id %r, which is not in "
                    "SMSLEDGER_WEBHOOK_SHARED_KEYS (403)", request.path, key_id)
        raise BadRequest(403, "signature_unknown_key",
                         f"{SIGNATURE_SETTINGS_HEADER} names key {key_id!r}, which is not "
                         "configured (SMSLEDGER_WEBHOOK_SHARED_KEYS)") from None
    if matched is None:
        return False
    app[METRICS].signatures.inc(matched)
    return True


# A host name or IPv4/IPv6 address, and a port of at most 5 digits (checked below 65536).
_FORWARDED_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?").fullmatch


def _last(request: web.Request, name: str) -> str:
    """The last value of a forwarded header: a proxy appends its own (as another header line,
    or after a comma) to whatever the client sent, so only the last is the proxy's word."""
    values = request.headers.getall(name, ())
    return values[-1].rsplit(",", 1)[-1].strip() if values else ""


def public_url(settings: Settings, request: web.Request) -> str:
    """The URL Twilio signed: the configured public base plus the path and query as sent.

    With SMSLEDGER_TRUST_FORWARDED=1 the scheme and host come from the proxy's
    X-Forwarded-Proto and X-Forwarded-Host instead (the last value of each: the one the proxy
    appended). Off by default: a client that can set those headers itself could otherwise
    choose the URL we verify."""
    target = request.raw_path
    if not target.startswith("/"):   # absolute-form (``POST http://x/twilio/status``)
        raise BadRequest(400, "malformed_target",
                         "the request target must be a path (/twilio/...), not a URL")
    if settings.trust_forwarded:
        proto = _last(request, "X-Forwarded-Proto").lower()
        host = _last(request, "X-Forwarded-Host")
        if proto in ("http", "https") and host:
            shape = _FORWARDED_HOST(host)
            if shape is None or int(shape.group(1) or 0) > 65535:
                raise BadRequest(400, "malformed_header",
                                 "X-Forwarded-Host is not a host name with an optional port")
            return f"{proto}://{host}{target}"
    return settings.public_url + target


API_MAX_BODY_BYTES = 1 << 20  # JSON bodies: /v1 (1000 sends), Event Streams batches


def body_here(request: web.Request, content_type: str, limit: int) -> bytes | None:
    """The raw body if all of it has arrived (a webhook's few hundred bytes come with its
    headers), else None (then ``read_body``); 415 for another content type, 413 over ``limit``.
    Synchronous, without ``request.read()``'s chunk-by-chunk loop: every webhook passes here."""
    if (request.headers.get(hdrs.CONTENT_TYPE) != content_type
            and request.content_type != content_type):
        raise BadRequest(415, "content_type",
                         f"expected Content-Type {content_type}, got {request.content_type!r}")
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > limit:
        raise BadRequest(413, "too_large", f"body is over the limit of {limit} bytes")
    return body


async def read_body(request: web.Request, content_type: str, limit: int) -> bytes:
    """The raw body, once its type and size are right (415, 413 otherwise)."""
    body = body_here(request, content_type, limit)
    return body if body is not None else await _read_rest(request, limit)


class SlowReaders:
    """The requests whose body is still arriving: each may take ``timeout_s`` at most, and at
    most ``limit`` at once (a stranger's slow bodies must not hold every connection)."""

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.limit, self.timeout_s, self.reading = limit, timeout_s, 0


SLOW_READERS = web.AppKey("slow_readers", SlowReaders)


async def _read_rest(request: web.Request, limit: int) -> bytes:
    """The body that ``body_here`` found still arriving (its type already checked): 408 if it
    takes longer than SMSLEDGER_BODY_TIMEOUT_S, 503 when SMSLEDGER_MAX_SLOW_READERS others are
    arriving already."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BadRequest(413, "too_large",
                         f"body of {declared} bytes is over the limit of {limit}")
    readers = request.app[SLOW_READERS]
    if readers.reading >= readers.limit:
        raise BadRequest(503, "slow_readers", "too many request bodies are arriving slowly; "
                         "try again", close=True)
    readers.reading += 1
    try:
        async with asyncio.timeout(readers.timeout_s):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, "too_large", f"body is over the limit of {limit} bytes") from None
    except TimeoutError:
        raise BadRequest(408, "body_timeout", f"the body did not arrive within "
                         f"{readers.timeout_s:g} s", close=True) from None
    finally:
        readers.reading -= 1
    if len(body) > limit:
        raise BadRequest(413, "too_large", f"body is over the limit of {limit} bytes")
    return body


async def signed_form(request: web.Request) -> dict[str, PayloadValue]:
    """The request's form fields, once its Twilio signature is proven."""
    app = request.app  # looked up once: every request passes here
    settings = app[SETTINGS]
    body = body_here(request, FORM_TYPE, settings.max_body_bytes)
    if body is None:  # read_body, without a coroutine frame for the usual whole body
        body = await _read_rest(request, settings.max_body_bytes)
    fields = parse_form(body, settings.max_form_fields)
    headers = request.headers
    signature = headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise BadRequest(403, "signature_missing", f"missing {SIGNATURE_HEADER}")
    if not signature.isascii():   # a byte such as 0xFF: no base64 signature
        raise BadRequest(400, "malformed_header", f"{SIGNATURE_HEADER} is not base64")
    if not signature_ok(request, public_url(settings, request), fields, signature):
        raise BadRequest(403, "signature_invalid",
                         f"{SIGNATURE_HEADER} does not match (is SMSLEDGER_PUBLIC_URL the URL "
                         "Twilio calls?)")
    check_twilio_shapes(fields, settings.twilio_account_sid)
    return fields


async def signed_json(request: web.Request) -> Any:
    """An Event Streams body, once ``bodySHA256`` and the signature over the URL are proven."""
    settings = request.app[SETTINGS]
    body = await read_body(request, "application/json", API_MAX_BODY_BYTES)
    declared = request.query.get("bodySHA256", "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise BadRequest(403, "signature_missing", f"missing {SIGNATURE_HEADER}")
    if not signature.isascii():
        raise BadRequest(400, "malformed_header", f"{SIGNATURE_HEADER} is not base64")
    if not declared:
        raise BadRequest(403, "signature_invalid", "a JSON webhook URL must carry bodySHA256")
    actual = hashlib.sha256(body).hexdigest()
    body_ok = declared.isascii() and hmac.compare_digest(actual.encode(),
                                                         declared.lower().encode())
    url = public_url(settings, request)
    if not body_ok or not signature_ok(request, url, {}, signature):
        raise BadRequest(403, "signature_invalid",
                         f"{SIGNATURE_HEADER} or bodySHA256 does not match")
    return load_json(body)


async def status_callback(request: web.Request) -> web.Response:
    appender = request.app[APPENDER]
    if appender.should_defer():  # half a burst is queued: let it go to PostgreSQL first
        await asyncio.sleep(0)
    fields = await signed_form(request)
    try:
        event = forms_in.status_callback(fields)
    except InvalidEvent as exc:
        raise BadRequest(400, "missing_field", str(exc)) from None
    await appender.append([event])
    return web.Response(status=200)


async def event_stream(request: web.Request) -> web.Response:
    """Event Streams webhook sink: a JSON array of CloudEvents. Answers well within Twilio's
    5 s (one group commit); an unknown event type is skipped, not refused, so that one new
    type from Twilio does not make it retry the whole batch for hours."""
    data = await signed_json(request)
    items = data if isinstance(data, list) else [data]
    evs: list[Event] = []
    for item in items:
        try:
            evs.extend(cloud_event(item))
        except InvalidEvent as exc:
            raise BadRequest(400, "invalid_cloudevent", str(exc)) from None
    if evs:
        await request.app[APPENDER].append(evs)
    return web.json_response({"received": len(items), "events": len(evs)})
