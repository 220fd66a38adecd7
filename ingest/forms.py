"""Reading a Twilio webhook form strictly: anything that cannot be stored faithfully is refused
with a 4xx before it reaches the event store."""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn
from urllib.parse import unquote_plus

from schema.events import PayloadValue

FORM_TYPE = "application/x-www-form-urlencoded"

# Twilio's largest form, an inbound MMS with 10 media, has about 50 fields (25 + a MediaUrlN and
# MediaContentTypeN per medium); WhatsApp adds a dozen more. Four times that, with room to spare.
MAX_FORM_FIELDS = 256


class BadRequest(ValueError):
    """A request we refuse; ``status`` is the HTTP code, ``reason`` a short metric label;
    ``close``: the connection is closed after the answer (its body was not read to the end)."""

    def __init__(self, status: int, reason: str, message: str,
                 extra: dict[str, object] | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.extra = extra or {}
        self.close = close


_REMEMBERED_LEN = 64     # phone numbers, SIDs, statuses; never a message body
_REMEMBERED_MAX = 4096   # values: at most 4096 × 64 characters
_remembered: dict[str, str] = {}


def _unquote_plus(text: str) -> str:
    """``unquote_plus(text, errors="strict")``, remembered for short values: Twilio sends the
    same sender and recipient numbers (``%2B1...``) over and over, and unquoting is the
    costliest step of parsing. Only short values, and only so many, because this runs before
    the signature is checked: a stranger's values must not fill memory (when full, the memory
    starts over). A value that fails to decode raises every time (errors are not kept)."""
    known = _remembered.get(text)
    if known is not None:
        return known
    plain = unquote_plus(text, errors="strict")
    if len(text) <= _REMEMBERED_LEN:
        if len(_remembered) >= _REMEMBERED_MAX:
            _remembered.clear()
        _remembered[text] = plain
    return plain


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict")`` for the
    webhook bodies we take, about twice as fast: a name or value is unquoted only when it holds
    ``%`` or ``+``. (A test holds the two equal on arbitrary input.)"""
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in name or "+" in name:
            name = _unquote_plus(name)
        if "%" in value or "+" in value:
            value = _unquote_plus(value)
        pairs.append((name, value))
    return pairs


def parse_form(body: bytes, max_fields: int = MAX_FORM_FIELDS) -> dict[str, PayloadValue]:
    """``body`` → fields by name; a repeated name keeps all its values, as a list. NUL bytes
    (raw or percent-encoded) and invalid UTF-8 are refused: PostgreSQL's jsonb cannot hold the
    first, and the second cannot be what Twilio signed. More than ``max_fields`` fields (empty
    ones counted) are refused before any is read: this runs before the signature is checked, so
    a stranger's body must cost little however it is made.

    The usual form (no name twice) is read in one pass, as ``dict(parse_pairs(text))`` would
    read it; the first repeated name sends the fields to ``_with_repeats`` instead. Both are
    linear in the body's length."""
    if b"\x00" in body:
        raise BadRequest(400, "nul_byte", "the body contains a NUL byte")
    if body.count(b"&") >= max_fields:
        raise BadRequest(400, "too_many_fields",
                         f"the form has more than {max_fields} fields")
    try:
        text = body.decode("utf-8")
        fields: dict[str, PayloadValue] = {}
        parts = text.split("&")
        for field in parts:
            if not field:
                continue
            name, _, value = field.partition("=")
            if "%" in field or "+" in field:
                if "%" in name or "+" in name:
                    name = _unquote_plus(name)
                if "%" in value or "+" in value:
                    value = _unquote_plus(value)
            if name in fields:
                fields = _with_repeats(parts)
                break
            fields[name] = value
    except UnicodeDecodeError:
        raise BadRequest(400, "invalid_utf8", "the body is not valid UTF-8") from None
    # Unquoting makes a NUL only from the escape "%00" (it is single-pass), so only a body that
    # holds one needs the check field by field.
    if "%00" in text and any("\x00" in name or "\x00" in value
                             for name, value in parse_pairs(text)):
        raise BadRequest(400, "nul_byte", "a form field contains a NUL byte")
    return fields


def _with_repeats(parts: list[str]) -> dict[str, PayloadValue]:
    """``parse_pairs``' reading of the fields, grouped by name. Each name's values gather in a
    list appended in place (a list rebuilt per repeat made a body of one name repeated n times
    cost n² / 2 copies); a name seen once gets its one value back."""
    grouped: dict[str, list[str]] = {}
    for field in parts:
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in name or "+" in name:
            name = _unquote_plus(name)
        if "%" in value or "+" in value:
            value = _unquote_plus(value)
        values = grouped.get(name)
        if values is None:
            grouped[name] = [value]
        else:
            values.append(value)
    return {name: values[0] if len(values) == 1 else values
            for name, values in grouped.items()}


# Twilio's shapes (its security documentation). Twilio signs ``URL + name1 + value1 + name2 +
# value2 ...`` with no separators, so a signed form can be replayed with a name/value boundary
# moved (``MessageSid`` = ``<sid>NumMedia0``, ``NumMedia`` gone) and the signature still holds:
# only strict shapes keep such a form from being stored under a new content key.
_SID = re.compile(r"(?:SM|MM)[0-9a-f]{32}").fullmatch
_ACCOUNT = re.compile(r"AC[0-9a-f]{32}").fullmatch
_STATUS = re.compile(r"[a-z][a-z_]{0,31}").fullmatch
_ERROR_CODE = re.compile(r"[0-9]{1,9}").fullmatch
_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fullmatch
# E.164 (WhatsApp's prefixed too), a short code, or an alphanumeric sender ID (1-11 letters,
# digits and spaces, at least one letter).
_PHONE = re.compile(r"(?:whatsapp:)?\+[1-9][0-9]{1,14}|[0-9]{3,8}"
                    r"|(?=[0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11}").fullmatch
_SHAPES = (("AccountSid", _ACCOUNT, "an account SID (AC + 32 hex digits)"),
           ("MessageStatus", _STATUS, "a lower-case status"),
           ("SmsStatus", _STATUS, "a lower-case status"),
           ("ErrorCode", _ERROR_CODE, "a number"),
           ("ApiVersion", _API_VERSION, "a date"),
           ("From", _PHONE, "an E.164 number, short code or alphanumeric sender"),
           ("To", _PHONE, "an E.164 number, short code or alphanumeric sender"))
_SID_NAMES = ("MessageSid", "SmsSid", "SmsMessageSid")
_REQUIRED = ("AccountSid", "From", "To")


def _malformed(name: str, what: str) -> NoReturn:
    raise BadRequest(400, "malformed_field", f"{name} must be {what}")


def check_twilio_shapes(form: dict[str, PayloadValue], account_sid: str = "") -> None:
    """400 unless the fields Twilio always sends have Twilio's shapes: the message SIDs
    (``MessageSid``, ``SmsSid``, ``SmsMessageSid``: SM/MM + 32 hex digits, all the same),
    ``AccountSid`` (and ``account_sid``'s, when configured), statuses, ``ErrorCode``,
    ``ApiVersion``, ``From`` and ``To``; each given once. ``AccountSid``, ``From`` and ``To``
    must be present (Twilio always sends them); which SID and status are required is the event
    builder's business."""
    sid = None
    for name in _SID_NAMES:
        value = form.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not _SID(value):
            _malformed(name, "a message SID (SM or MM + 32 lower-case hex digits)")
        if sid is None:
            sid = value
        elif value != sid:
            raise BadRequest(400, "malformed_field", f"{name} differs from MessageSid")
    for name, shape, what in _SHAPES:
        value = form.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not shape(value):
            _malformed(name, what)
    for name in _REQUIRED:
        if name not in form:
            raise BadRequest(400, "missing_field", f"missing required field {name}")
    if account_sid and form["AccountSid"] != account_sid:
        raise BadRequest(400, "wrong_account",
                         "AccountSid is not this ingester's account (TWILIO_ACCOUNT_SID)")


MAX_JSON_DEPTH = 64   # orjson, which writes payloads, stops at 255 levels; Twilio's use 3


def check_storable(value: object, where: str = "body") -> None:
    """400 unless every string in a parsed JSON value can be stored: PostgreSQL's jsonb holds
    no NUL character, and a lone surrogate (``"\\ud800"``) is not UTF-8 at all; and unless it
    nests at most ``MAX_JSON_DEPTH`` levels."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise BadRequest(400, "unstorable_text",
                                 f"the {where} holds a NUL character, which cannot be stored")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(400, "unstorable_text", f"the {where} holds a lone surrogate "
                                 "(not Unicode text), which cannot be stored") from None
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise BadRequest(400, "too_deep",
                                 f"the {where} nests more than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> Any:
    """A request's JSON body, strictly: UTF-8 JSON as RFC 8259 defines it (no ``NaN`` or
    ``Infinity``, which JSON does not have and jsonb cannot hold) whose every string can be
    stored; 400 otherwise."""
    if b"\x00" in body:
        raise BadRequest(400, "nul_byte", "the body contains a NUL byte")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "invalid_json", "the body is not valid JSON") from None
    except RecursionError:   # thousands of nested brackets: deeper than Python's parser goes
        raise BadRequest(400, "too_deep",
                         f"the body nests more than {MAX_JSON_DEPTH} levels") from None
    check_storable(data)
    return data
