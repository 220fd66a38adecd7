"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.fuzz_hooks``): every generated webhook is
signed as Twilio signs it, by the twilio library's ``RequestValidator.compute_signature`` (and
an Event Streams body gets its real ``bodySHA256``), so the fuzzing gets past the 403 and
reaches the parsers and the store (``/v1`` gets the bearer key from the command line). A check
records which requests were answered 2xx, so the test can hold each of them to its events in
PostgreSQL.

Configuration comes from the environment the test sets: ``FUZZ_PUBLIC_URL`` (the ingester's
SMSLEDGER_PUBLIC_URL), ``FUZZ_AUTH_TOKEN``, ``FUZZ_ACCOUNT_SID``, ``FUZZ_NUMBERS`` and
``FUZZ_LOG`` (a file the
accepted requests are appended to, one JSON line each).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any
from urllib.parse import urlencode

import schemathesis
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from sim.world import make_numbers

SIGNED_FORMS = ("/twilio/status", "/twilio/inbound")


def _form_params(body: Any) -> dict[str, Any] | None:
    """The form as the server will parse it (requests drops None values, str()s the rest)."""
    if not isinstance(body, dict):
        return None
    params: dict[str, Any] = {}
    for name, value in body.items():
        values = value if isinstance(value, list) else [value]
        kept = [str(v) for v in values if v is not None]
        if kept:
            params[str(name)] = kept if len(kept) > 1 else kept[0]
    return params


def _numbers() -> list[str]:
    """Numbers the simulated Twilio knows (its world from FUZZ_NUMBERS="seed,count")."""
    seed, count = (int(x) for x in os.environ.get("FUZZ_NUMBERS", "3,50").split(","))
    return [n.e164 for n in make_numbers(seed, count)]


# `format: e164` in the spec: a number libphonenumber holds valid, as the ingester requires.
schemathesis.openapi.format("e164", st.sampled_from(_numbers()))


def _as_twilio_sends(form: dict[str, Any]) -> None:
    """What Twilio's forms hold beyond the spec's shapes: this ingester's account, and the
    legacy SmsSid equal to MessageSid. Only well-shaped values are replaced, so a case meant to
    break a shape still does."""
    account = os.environ["FUZZ_ACCOUNT_SID"]
    if isinstance(form.get("AccountSid"), str) and len(form["AccountSid"]) == len(account) \
            and form["AccountSid"].startswith("AC"):
        form["AccountSid"] = account
    sid, copy = form.get("MessageSid"), form.get("SmsSid")
    if isinstance(sid, str) and isinstance(copy, str) and len(sid) == len(copy) == 34 \
            and sid[:2] in ("SM", "MM") and copy[:2] in ("SM", "MM"):
        form["SmsSid"] = sid


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A real signature in place of the generated one. A case generated without the header
    (schemathesis testing that it is required) stays without it."""
    path = case.operation.path
    if not case.headers or "X-Twilio-Signature" not in case.headers:
        return
    validator = RequestValidator(os.environ["FUZZ_AUTH_TOKEN"])
    base = os.environ["FUZZ_PUBLIC_URL"]
    if path in SIGNED_FORMS:
        if isinstance(case.body, dict):
            _as_twilio_sends(case.body)
        case.headers["X-Twilio-Signature"] = validator.compute_signature(
            base + path, _form_params(case.body) or {})
    elif path == "/twilio/events":
        # The bytes requests sends for ``json=``: json.dumps with its defaults.
        try:
            raw = json.dumps(case.body, allow_nan=False)
        except (TypeError, ValueError):
            return                        # no JSON body: leave the generated signature
        if case.query is None:
            case.query = {}
        case.query["bodySHA256"] = hashlib.sha256(raw.encode()).hexdigest()
        case.headers["X-Twilio-Signature"] = validator.compute_signature(
            f"{base}{path}?{urlencode(case.query)}", {})


@schemathesis.check
def accepted_requests_are_logged(ctx: Any, response: Any, case: Any) -> bool | None:
    """Not a verdict on its own: records every 2xx POST so the test can find its events."""
    if case.method.upper() == "POST" and 200 <= response.status_code < 300:
        body = case.body if isinstance(case.body, (dict, list)) else None
        with open(os.environ["FUZZ_LOG"], "a") as log:
            log.write(json.dumps({"path": case.operation.path, "status": response.status_code,
                                  "body": body, "response": response.text[:2000]},
                                 default=str) + "\n")
    return None
