"""Reading a Twilio webhook form strictly: anything that cannot be stored faithfully is refused
with a 4xx before it reaches the event store."""

from __future__ import annotations

from urllib.parse import parse_qsl

from schema.events import PayloadValue

FORM_TYPE = "application/x-www-form-urlencoded"


class BadRequest(ValueError):
    """A request we refuse; ``status`` is the HTTP code, ``reason`` a short metric label."""

    def __init__(self, status: int, reason: str, message: str,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.extra = extra or {}


def parse_form(body: bytes) -> tuple[dict[str, PayloadValue], list[tuple[str, str]]]:
    """``body`` → (fields by name, pairs as sent). A repeated name keeps all its values, as a
    list. NUL bytes (raw or percent-encoded) and invalid UTF-8 are refused: PostgreSQL's jsonb
    cannot hold the first, and the second cannot be what Twilio signed."""
    if b"\x00" in body:
        raise BadRequest(400, "nul_byte", "the body contains a NUL byte")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(400, "invalid_utf8", "the body is not valid UTF-8") from None
    fields: dict[str, PayloadValue] = {}
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise BadRequest(400, "nul_byte", "a form field contains a NUL byte")
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields, pairs
