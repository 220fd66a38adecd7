"""Reading a Twilio webhook form strictly: anything that cannot be stored faithfully is refused
with a 4xx before it reaches the event store."""

from __future__ import annotations

import functools
from urllib.parse import unquote_plus

from schema.events import PayloadValue

FORM_TYPE = "application/x-www-form-urlencoded"


class BadRequest(ValueError):
    """A request we refuse; ``status`` is the HTTP code, ``reason`` a short metric label."""

    def __init__(self, status: int, reason: str, message: str,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.extra = extra or {}


_REMEMBERED_LEN = 64  # phone numbers, SIDs, statuses; never a message body


@functools.lru_cache(maxsize=4096)
def _unquote_short(text: str) -> str:
    return unquote_plus(text, errors="strict")


def _unquote_plus(text: str) -> str:
    """``unquote_plus(text, errors="strict")``, remembered for short values: Twilio sends the
    same sender and recipient numbers (``%2B1...``) over and over, and unquoting is the
    costliest step of parsing. Only short values, because this runs before the signature is
    checked: a stranger's large values must not fill memory (the cache holds at most
    4096 × 64 characters). A value that fails to decode raises every time (errors are not
    cached)."""
    if len(text) <= _REMEMBERED_LEN:
        return _unquote_short(text)
    return unquote_plus(text, errors="strict")


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


def parse_form(body: bytes) -> dict[str, PayloadValue]:
    """``body`` → fields by name; a repeated name keeps all its values, as a list. NUL bytes
    (raw or percent-encoded) and invalid UTF-8 are refused: PostgreSQL's jsonb cannot hold the
    first, and the second cannot be what Twilio signed."""
    if b"\x00" in body:
        raise BadRequest(400, "nul_byte", "the body contains a NUL byte")
    try:
        text = body.decode("utf-8")
        pairs = parse_pairs(text)
    except UnicodeDecodeError:
        raise BadRequest(400, "invalid_utf8", "the body is not valid UTF-8") from None
    # Unquoting makes a NUL only from the escape "%00" (it is single-pass), so only a body that
    # holds one needs the check field by field.
    if "%00" in text and any("\x00" in name or "\x00" in value for name, value in pairs):
        raise BadRequest(400, "nul_byte", "a form field contains a NUL byte")
    fields: dict[str, PayloadValue] = dict(pairs)
    if len(fields) == len(pairs):  # no name twice: the usual form
        return fields
    fields = {}
    for name, value in pairs:
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


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
