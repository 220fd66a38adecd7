"""Final prices from the Messages API.

A Message's ``price`` is null at create and filled in later, up to 24 h after sending, and no
webhook announces it. So the worker walks the sends older than the fill-in window with no
``message.priced`` event yet, a bounded page per round (keyset by send time and SID, so a
round goes on where the last one stopped, and a restart starts over from the oldest: the log
says which are done), fetches each from the Messages API and appends ``message.priced``.
Keyed by SID and amount: running twice, or alongside a backfill that brought the same price,
stores nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from twilio.base.exceptions import TwilioRestException

from schema import store
from schema.events import Event, Source, message_priced_from

log = logging.getLogger("smsledger.analytics.pricefill")

START = (datetime(1970, 1, 1, tzinfo=UTC), "")


@dataclasses.dataclass
class PriceFillResult:
    checked: int = 0
    priced: int = 0          # new message.priced events
    without_price: int = 0   # Twilio has no price for them yet
    refused: int = 0         # Twilio answered 4xx (e.g. 404: not a message of this account)


class PriceFill:
    def __init__(self, *, after: timedelta, limit: int = 500,
                 max_age: timedelta = timedelta(days=30), concurrency: int = 8) -> None:
        self.after, self.limit, self.max_age = after, limit, max_age
        self._slots = asyncio.Semaphore(concurrency)
        self._cursor = START

    async def _fetch(self, client: Any, sid: str) -> Any:
        async with self._slots:
            try:
                return await client.messages(sid).fetch_async()
            except TwilioRestException as exc:
                # One line a message at DEBUG; the round says how many at WARNING (a page of
                # messages Twilio does not know made a page of warnings every round).
                log.debug("price fill: Twilio %s for a message (%s)", exc.status, exc.code)
                return exc

    async def run(self, client: Any, pg: asyncpg.Connection,
                  now: datetime | None = None) -> PriceFillResult:
        """One round: at most ``limit`` messages fetched."""
        now = now or datetime.now(UTC)
        result = PriceFillResult()
        rows = await pg.fetch(store.sql("unpriced"), now - self.max_age, now - self.after,
                              self._cursor[0], self._cursor[1], self.limit)
        # A short page is the end of the walk: the next round starts again from the oldest
        # (messages Twilio had not priced yet are asked again then).
        self._cursor = ((rows[-1]["occurred_at"], rows[-1]["message_sid"])
                        if len(rows) == self.limit else START)
        fetched = await asyncio.gather(*(self._fetch(client, r["message_sid"]) for r in rows))
        found: list[Event] = []
        refusals: dict[str, int] = {}
        for row, message in zip(rows, fetched, strict=True):
            if isinstance(message, TwilioRestException):
                label = f"HTTP {message.status} code {message.code}"
                refusals[label] = refusals.get(label, 0) + 1
                continue
            result.checked += 1
            event = message_priced_from(row["message_sid"], message.price, message.price_unit,
                                        source=Source.RECONCILE)
            if event is None:
                result.without_price += 1
            else:
                found.append(event)
        result.priced = len(await store.append(pg, found))
        result.refused = sum(refusals.values())
        if refusals:
            log.warning("price fill: Twilio refused %d of %d messages (%s); not priced",
                        result.refused, len(rows),
                        ", ".join(f"{label} ×{n}" for label, n in sorted(refusals.items())))
        return result
