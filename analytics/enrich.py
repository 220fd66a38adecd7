"""Carrier enrichment through Twilio Lookup v2 ``line_type_intelligence``.

Paid per request: each number is asked once, the answer appended as a ``number.looked_up``
event (keyed by the number, so a second answer stores nothing) and the rollup reads it from the
log like any other fact. Bounded per run; off when there are no Twilio credentials.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import duckdb
from twilio.base.exceptions import TwilioRestException

from analytics import queries
from schema import store
from schema.events import Event, number_looked_up
from twilio_api.client import UNREACHABLE

log = logging.getLogger("smsledger.analytics.enrich")


def numbers_to_look_up(duck: duckdb.DuckDBPyConnection, limit: int,
                       asked: set[str]) -> list[str]:
    rows = duck.execute(queries.sql("numbers_to_look_up"),
                        {"limit": limit + len(asked)}).fetchall()
    return [r[0] for r in rows if r[0] not in asked][:limit]


async def look_up(client: Any, pg: asyncpg.Connection, phones: list[str],
                  asked: set[str]) -> int:
    """Ask Lookup about ``phones``; append what it says. Returns events stored."""
    events: list[Event] = []
    for phone in phones:
        asked.add(phone)
        try:
            result = await client.lookups.v2.phone_numbers(phone).fetch_async(
                fields="line_type_intelligence")
        except TwilioRestException as exc:
            log.warning("lookup of a number failed: Twilio %s %s", exc.status, exc.code)
            if 400 <= (exc.status or 0) < 500 and exc.status != 429:
                # Twilio's final word on this number (no such number, not a valid one): kept
                # as the answer, so it is not asked again every run, first in line, until
                # such numbers take the whole budget. (429 and 5xx: asked again next run.)
                events.append(number_looked_up(
                    phone=phone, carrier_name=None, line_type=None, mobile_country_code=None,
                    mobile_network_code=None, error_code=exc.code))
            continue
        except UNREACHABLE as exc:
            log.warning("lookup unavailable (%s); trying again next run", type(exc).__name__)
            asked.discard(phone)
            break
        info = result.line_type_intelligence or {}
        events.append(number_looked_up(
            phone=phone, carrier_name=info.get("carrier_name"), line_type=info.get("type"),
            mobile_country_code=info.get("mobile_country_code"),
            mobile_network_code=info.get("mobile_network_code"),
            error_code=info.get("error_code")))
    return len(await store.append(pg, events))
