"""Logging for every smsledger process: one format, and secrets scrubbed from every record."""

from __future__ import annotations

import logging
import re
import sys

from aiohttp.http_exceptions import HttpProcessingError

from schema.settings import SETTINGS, Settings

MASK = "**********"
# A secret cut short (aiohttp ends a long header value it quotes with "...") still leaks what
# is left of it: any 8 or more of its first characters are scrubbed too.
_SHORTEST = 8


def _prefixes(secret: str) -> str:
    """A pattern for the secret's first ``_SHORTEST`` characters and as many more as follow."""
    head, rest = secret[:_SHORTEST], secret[_SHORTEST:]
    tail = ""
    for ch in reversed(rest):
        tail = f"(?:{re.escape(ch)}{tail})?"
    return re.escape(head) + tail


class ScrubSecrets(logging.Filter):
    """Defence in depth: whatever a log call formats — its message and arguments, the text of
    its exception (aiohttp quotes a too-long header in its traceback) and stack — a known
    secret never reaches a handler."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        kept = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._pattern = (re.compile("|".join(_prefixes(s) for s in kept)) if kept else None)

    def scrub(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse a record's exc_text once set: set it scrubbed.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


class ClientErrorsAtDebug(logging.Filter):
    """aiohttp logs a request it cannot parse (a header over 8,190 bytes, a bad Content-Length)
    at ERROR with its traceback: the client's fault, answered 400, and by the thousand under
    attack. Such records go out at DEBUG, or not at all below it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class ScrubbingFormatter(logging.Formatter):
    """The handler's formatter: the fully formatted line is scrubbed once more, whatever a
    record or a formatter added to it."""

    def __init__(self, fmt: str, scrubber: ScrubSecrets) -> None:
        super().__init__(fmt)
        self._scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self._scrubber.scrub(super().format(record))


def setup_logging(settings: Settings) -> None:
    scrubber = ScrubSecrets([getattr(settings, s.field).reveal() for s in SETTINGS
                             if s.secret])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            scrubber))
    handler.addFilter(scrubber)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorsAtDebug) for f in server.filters):
        server.addFilter(ClientErrorsAtDebug())
    # The twilio client logs every request with its parameters (phone numbers, bodies) at INFO.
    logging.getLogger("twilio").setLevel(logging.WARNING)
