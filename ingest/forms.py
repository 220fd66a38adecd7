"""Reading a Twilio webhook form strictly: anything that cannot be stored faithfully is refused
with a 4xx before it reaches the event store."""

from __future__ import annotations

import json
from typing import Any, NoReturn
from urllib.parse import unquote_plus

from schema.events import PayloadValue

FORM_TYPE = "application/x-www-form-urlencoded"

# Twilio's largest form, an inbound MMS with 10 media, has about 50 fields (25 + a MediaUrlN and
# MediaContentTypeN per medium); WhatsApp adds a dozen more. Four times that, with room to spare.
MAX_FORM_FIELDS = 256


class BadRequest(ValueError):
    """A request we refuse; ``status`` is the HTTP code, ``reason`` a short metric label."""

    def __init__(self, status: int, reason: str, message: str,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.extra = extra or {}


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


def check_storable(value: object, where: str = "body") -> None:
    """400 unless every string in a parsed JSON value can be stored: PostgreSQL's jsonb holds
    no NUL character, and a lone surrogate (``"\\ud800"``) is not UTF-8 at all."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise BadRequest(400, "unstorable_text",
                                 f"the {where} holds a NUL character, which cannot be stored")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(400, "unstorable_text", f"the {where} holds a lone surrogate "
                                 "(not Unicode text), which cannot be stored") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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
    check_storable(data)
    return data
