"""Logging for every smsledger process: one format, and secrets scrubbed from every record."""

from __future__ import annotations

import logging
import sys

from schema.settings import SETTINGS, Settings


class ScrubSecrets(logging.Filter):
    """Defence in depth: whatever a log call formats, a known secret never reaches a handler."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            for s in self._secrets:
                message = message.replace(s, "**********")
            record.msg, record.args = message, None
        return True


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubSecrets([getattr(settings, s.field).reveal() for s in SETTINGS
                                    if s.secret]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The twilio client logs every request with its parameters (phone numbers, bodies) at INFO.
    logging.getLogger("twilio").setLevel(logging.WARNING)
