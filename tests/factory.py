"""Planting event histories: events built by the real builders, with chosen times."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import duckdb

from analytics.hygiene import HygieneRules, load_rules
from analytics.lake import Lake, write_pointer
from analytics.model import open_model
from analytics.reader import prepare
from analytics.rollup import Rollup, RollupResult
from schema import events, store
from schema.events import Event, Source
from schema.sources.webhooks import inbound_message, status_callback

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
    return status_callback(form, received_at=when)


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
    return [at(e, when) for e in inbound_message(form)]


async def append(db: asyncpg.Connection, evs: Sequence[Event]) -> None:
    async with db.transaction():
        await store.append(db, list(evs))



async def settled(db: asyncpg.Connection, timeout_s: float = 60) -> None:
    """Wait until every committed event is below the gap-free reader's horizon
    (``read_horizon()``, migration 0018), so that a rollup right after sees all of them."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await db.fetchval(
            "SELECT coalesce(max(tx_id) < read_horizon(), true) FROM events"):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"an open transaction held the read horizon for {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


def lake_at(db_url: str, path: Path) -> Lake:
    """A model of its own for ``path`` (its data files there, its catalog in a PostgreSQL schema
    named after it), so that one test may build several from one event log."""
    stem = "".join(c if c.isalnum() else "_" for c in path.stem.lower())
    return Lake(db_url, f"lake_{stem}", path)


def publish(db_url: str, data_dir: Path, path: Path | None = None) -> Path:
    """Name the model built at ``path`` (default ``data_dir/lake/model``) as the data dir's
    current one, as the worker does: readers (``open_snapshot(data_dir)``) then open it."""
    path = path or data_dir / "lake" / "model"
    write_pointer(data_dir, lake_at(db_url, path))
    return path


async def rollup(db_url: str, path: Path, batch_size: int = 1000, *, complete: bool = True,
                 rules: HygieneRules | None = None, deadline_s: float = 60,
                 ) -> tuple[duckdb.DuckDBPyConnection, RollupResult]:
    """The real rollup into ``path``; with ``complete``, run again until the model holds every
    event committed so far. The reader stops at PostgreSQL's snapshot horizon, which is
    cluster-wide: a transaction open in another database of a shared server (another test
    session's) can hold this one's events back from one run."""
    pg = await asyncpg.connect(db_url)
    try:
        await prepare(pg)
        duck = open_model(lake_at(db_url, path))
        rules = rules or load_rules()
        roll = Rollup(duck, rules, batch_size=batch_size)
        result = await (run_to_the_end(roll, pg, deadline_s) if complete else roll.run(pg))
        return duck, result
    finally:
        await pg.close()


async def run_to_the_end(roll: Rollup, pg: asyncpg.Connection, deadline_s: float = 60,
                         ) -> RollupResult:
    """``roll.run(pg)``, again until the model holds every event committed before the call."""
    stored = await pg.fetchval("SELECT count(*) FROM events")
    deadline = asyncio.get_running_loop().time() + deadline_s
    result = await roll.run(pg)
    while (applied := _count(roll.duck, "events")) < stored:
        assert asyncio.get_running_loop().time() < deadline, (
            f"the rollup applied {applied} of {stored} events")
        await asyncio.sleep(0.05)
        more = await roll.run(pg)
        result.events += more.events
        result.batches += more.batches
    return result


def _count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {name}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def table(con: duckdb.DuckDBPyConnection, name: str, order: str) -> list[tuple[object, ...]]:
    return con.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()  # noqa: S608
