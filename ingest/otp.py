"""OTP conversion feedback: ``POST /v1/otp/confirm`` tells Twilio (Message Feedback,
``outcome=confirmed``) that the user used the code a message carried, and appends
``otp.confirmed``. OTP sends through /v1/messages ask Twilio for feedback
(``ProvideFeedback=true``), so Twilio's own OTP conversion reports see it too.

Feedback is posted once per confirmation: a retry (the app's, or the user's double tap) finds
``otp.confirmed`` stored and answers 200 without calling Twilio again. The check, the call and
the append run under an advisory lock on the SID in one transaction, so two retries racing on
two ingesters cannot both post.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from aiohttp import web
from twilio.base.exceptions import TwilioRestException

from ingest.append import OUTAGE_ERRORS
from ingest.forms import BadRequest
from ingest.ops import POOL
from ingest.send import TWILIO, json_body, twilio_unreachable
from ingest.webhooks import SETTINGS
from schema import events, store
from twilio_api.client import UNREACHABLE

MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")


async def confirm(request: web.Request) -> web.Response:
    data = await json_body(request)
    sid = data.get("sid") if isinstance(data, dict) else None
    if not isinstance(sid, str) or not MESSAGE_SID.fullmatch(sid):
        raise BadRequest(400, "invalid_field", "`sid` must be a Twilio message SID (SM or MM "
                                               "and 32 hex digits)")
    timeout = request.app[SETTINGS].db_timeout_s
    try:
        async with request.app[POOL].acquire(timeout=timeout) as conn, conn.transaction():
            await asyncio.wait_for(store.lock_for(conn, f"otp.confirmed:{sid}"), timeout)
            state = await store.otp_state(conn, sid)
            if state.confirmed:
                return web.json_response({"sid": sid, "outcome": "confirmed",
                                          "already_confirmed": True})
            if not state.sent:
                raise BadRequest(404, "unknown_message",
                                 f"no message {sid} was sent or recorded through smsledger")
            if state.category not in (None, "otp"):
                raise BadRequest(409, "not_otp",
                                 f"message {sid} is {state.category}, not otp: Twilio was not "
                                 "asked for feedback on it (send OTPs with category otp)")
            requested_at = datetime.now(UTC)
            outcome = await _post_feedback(request, sid)
            await store.append(conn, [events.otp_confirmed(
                sid=sid, phone=state.phone, outcome=outcome, requested_at=requested_at)])
    except OUTAGE_ERRORS:
        # Nothing was posted unless the commit itself failed; then a retry posts again, which
        # Twilio takes as the same outcome.
        raise BadRequest(503, "store_unavailable", "the event store is unavailable; retry "
                                                   "later") from None
    return web.json_response({"sid": sid, "outcome": outcome, "already_confirmed": False},
                             status=201)


async def _post_feedback(request: web.Request, sid: str) -> str:
    try:
        feedback = await request.app[TWILIO].messages(sid).feedback.create_async(
            outcome="confirmed")
    except TwilioRestException as exc:
        if exc.status >= 500:
            raise twilio_unreachable(exc) from None
        status = 404 if exc.status == 404 else 400
        raise BadRequest(status, "twilio_refused", f"Twilio refused the feedback: {exc.msg}",
                         extra={"twilio_code": exc.code}) from None
    except UNREACHABLE as exc:
        raise twilio_unreachable(exc) from None
    return str(feedback.outcome or "confirmed")
