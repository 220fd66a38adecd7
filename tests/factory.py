"""Planting event histories: events built by the real builders, with chosen times."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import duckdb

from analytics.hygiene import load_rules
from analytics.lake import Lake
from analytics.model import open_model
from analytics.reader import prepare
from analytics.rollup import Rollup, RollupResult
from schema import events, store
from schema.events import Event, Source

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OUR = "+15005550006"


def at(event: Event, when: datetime) -> Event:
    return event._replace(occurred_at=when, received_at=when)


def sent(sid: str, to: str, when: datetime, category: str = "otp") -> Event:
    return events.message_sent(sid=sid, to=to, from_=OUR, messaging_service_sid=None,
                               category=category, tags=[], segments=1, media_count=0,
                               status="queued", requested_at=when, source=Source.API,
                               received_at=when)


def status(sid: str, to: str, st: str, when: datetime, code: int | None = None) -> Event:
    form = {"MessageSid": sid, "MessageStatus": st, "To": to, "From": OUR,
            "AccountSid": "AC" + "0" * 32}
    if code is not None:
        form["ErrorCode"] = str(code)
    return events.status_callback(form, received_at=when)


def message(n: int, to: str, when: datetime, outcome: str = "delivered",
            code: int | None = None, latency_s: float = 3.0, category: str = "otp",
            ) -> list[Event]:
    """A whole message: sent, the `sent` callback, then its outcome."""
    sid = f"SM{n:032x}"
    final = when + timedelta(seconds=latency_s)
    return [sent(sid, to, when, category), status(sid, to, "sent", when + timedelta(seconds=1)),
            status(sid, to, outcome, final, code)]


def inbound(n: int, phone: str, body: str, when: datetime) -> list[Event]:
    form = {"MessageSid": f"SM{n:032x}", "From": phone, "To": OUR, "Body": body}
    return [at(e, when) for e in events.inbound_message(form)]


async def append(db: asyncpg.Connection, evs: Sequence[Event]) -> None:
    async with db.transaction():
        await store.append(db, list(evs))
    await settled(db)


async def settled(db: asyncpg.Connection, timeout_s: float = 60) -> None:
    """Wait until every committed event is below the gap-free reader's horizon
    (``pg_snapshot_xmin``), so that a rollup right after sees all of them. The horizon is the
    server's oldest running transaction in ANY database: on a server shared with other test
    sessions (one creating a database from a template, say) it can trail our commit."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await db.fetchval(
            "SELECT coalesce(max(tx_id) < pg_snapshot_xmin(pg_current_snapshot()), true) "
            "FROM events"):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("an older transaction on the server held the read horizon "
                               f"for {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


def lake_at(db_url: str, path: Path) -> Lake:
    """A model of its own for ``path`` (its data files there, its catalog in a PostgreSQL schema
    named after it), so that one test may build several from one event log."""
    stem = "".join(c if c.isalnum() else "_" for c in path.stem.lower())
    return Lake(db_url, f"lake_{stem}", path)


async def rollup(db_url: str, path: Path, batch_size: int = 1000,
                 ) -> tuple[duckdb.DuckDBPyConnection, RollupResult]:
    pg = await asyncpg.connect(db_url)
    try:
        await prepare(pg)
        duck = open_model(lake_at(db_url, path))
        result = await Rollup(duck, load_rules(), batch_size=batch_size).run(pg)
        return duck, result
    finally:
        await pg.close()


def table(con: duckdb.DuckDBPyConnection, name: str, order: str) -> list[tuple[object, ...]]:
    return con.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()  # noqa: S608
