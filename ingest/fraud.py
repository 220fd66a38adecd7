"""The fraud guard (``SMSLEDGER_FRAUD_GUARD=1``): while a ``pumping`` alert is open for a
number prefix, OTP sends and Verify starts to numbers in it are refused (409) before Twilio is
called, naming the alert and its evidence; resolving the alert lifts it.

The ingester learns which alerts are open from the event log (``schema/sql/
open_pumping_alerts.sql``): analytics appends the alerts, the ingester reads them, neither
imports the other. The answer is cached for ``TTL_S``: OTP sends are frequent and the alerts
change every few minutes at most. If the store cannot answer, the last answer stands (or no
block): the guard is an opt-in brake on fraud, and failing closed would stop every login.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from ingest.forms import BadRequest
from ingest.ops import POOL
from ingest.webhooks import APPENDER, SETTINGS
from schema import events, store

log = logging.getLogger("smsledger.ingest.fraud")

TTL_S = 2.0


@dataclasses.dataclass(frozen=True)
class OpenAlert:
    alert_id: str
    country: str | None
    prefix: str
    text: str
    signals: tuple[str, ...]


class FraudGuard:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._alerts: list[OpenAlert] = []
        self._at = -float("inf")
        self._lock = asyncio.Lock()

    async def _refresh(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        async with self._lock:
            if time.monotonic() - self._at < self.ttl_s:
                return
            try:
                async with pool.acquire(timeout=timeout_s) as conn:
                    rows = await asyncio.wait_for(
                        conn.fetch(store.sql("open_pumping_alerts")), timeout_s)
            except (OSError, TimeoutError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as exc:
                log.warning("fraud guard: cannot read open alerts (%s); keeping the last "
                            "answer", type(exc).__name__)
                self._at = time.monotonic()
                return
            self._alerts = [
                OpenAlert(alert_id=r["alert_id"], country=r["country"], prefix=r["prefix"],
                          text=r["text"] or "",
                          signals=tuple(json.loads(r["signals"]) if r["signals"] else ()))
                for r in rows if r["prefix"]]
            self._at = time.monotonic()

    async def blocking(self, pool: asyncpg.Pool, phone: str,
                       timeout_s: float) -> OpenAlert | None:
        """The open pumping alert whose prefix ``phone`` is in, or None."""
        await self._refresh(pool, timeout_s)
        for alert in self._alerts:
            if phone.startswith(alert.prefix):
                return alert
        return None


GUARD = web.AppKey("fraud_guard", FraudGuard)


async def check(request: web.Request, to: str, what: str) -> None:
    """409 (and a ``message.refused`` event) when the guard is on and ``to`` is in a prefix
    with an open pumping alert; nothing reaches Twilio then."""
    settings = request.app[SETTINGS]
    if not settings.fraud_guard:
        return
    alert = await request.app[GUARD].blocking(request.app[POOL], to, settings.db_timeout_s)
    if alert is None:
        return
    await request.app[APPENDER].append([events.message_refused(
        request_id=str(uuid.uuid4()), to=to, reason="pumping", detail=alert.alert_id,
        since=datetime.now(UTC), what=what)])
    raise BadRequest(409, "pumping_suspected",
                     f"{what} to {alert.prefix}xxxx refused: SMS pumping suspected "
                     f"(alert {alert.alert_id}); nothing was sent. {alert.text}",
                     extra={"reason": "pumping", "alert_id": alert.alert_id,
                            "prefix": alert.prefix, "country": alert.country,
                            "signals": list(alert.signals), "evidence": alert.text})
