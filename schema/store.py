"""Append and read on the event store. The SQL lives in ``schema/sql``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import asyncpg

from schema.events import Event, as_json_rows


@cache
def sql(name: str) -> str:
    """The text of ``schema/sql/<name>.sql``."""
    return resources.files("schema").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


async def append(conn: asyncpg.Connection, events: Sequence[Event]) -> set[str]:
    """Insert ``events`` in one statement; return the idempotency keys that were new.

    Duplicates (already stored, or twice in ``events``) insert nothing. One statement, so
    atomic on its own (no transaction needed); a caller may still wrap it in a larger one.
    """
    if not events:
        return set()
    rows = await conn.fetch(sql("append"), as_json_rows(events))
    return {r["idempotency_key"] for r in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """Where a reader stands: the last (tx_id, position) it has applied."""
    tx_id: int = 0
    position: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    position: int
    tx_id: int
    idempotency_key: str
    type: str
    version: int
    source: str
    message_sid: str | None
    phone: str | None
    status: str | None
    error_code: int | None
    occurred_at: datetime
    received_at: datetime
    payload: str  # the JSON text, parsed only by readers that need it


async def read_after(conn: asyncpg.Connection, cursor: Cursor, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` committed events after ``cursor`` that no later commit can precede."""
    rows = await conn.fetch(sql("read_after"), str(cursor.tx_id), cursor.position, limit)
    return [_stored(r) for r in rows]


def _stored(r: Any) -> StoredEvent:
    return StoredEvent(
        position=r["position"], tx_id=int(r["tx_id"]), idempotency_key=r["idempotency_key"],
        type=r["type"], version=r["version"], source=r["source"], message_sid=r["message_sid"],
        phone=r["phone"], status=r["status"], error_code=r["error_code"],
        occurred_at=r["occurred_at"], received_at=r["received_at"], payload=r["payload"])


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """Why a number may not be texted: opted out, or suppressed by a hygiene rule or a user."""
    reason: str          # "opted_out" or "suppressed"
    since: datetime
    detail: str          # the keyword or the suppression reason
    scope: str = "account"   # "account", "messaging_service:MG...", "sender:+1..."


async def send_block(conn: asyncpg.Connection, phone: str) -> Block | None:
    """The reason ``phone`` may not be texted now, from any sender, or None."""
    for row in await conn.fetch(sql("contact_state"), phone):
        block = _block(row, "account")
        if block is not None:
            return block
    return None


async def scoped_send_block(conn: asyncpg.Connection, phone: str, *,
                            messaging_service_sid: str | None,
                            sender: str | None) -> Block | None:
    """The reason ``phone`` may not be texted through this Messaging Service or from this
    sender number (opt-outs scoped as Twilio scopes them), or None. Pass "" for what the send
    does not use; None for either means "every scope" (a send whose sender is unknown)."""
    rows = await conn.fetch(sql("contact_state_scoped"), phone, messaging_service_sid, sender)
    blocks = [b for b in (_block(row, row["scope"]) for row in rows) if b is not None]
    # Suppressions first (they are not undone by a START), then the oldest opt-out.
    blocks.sort(key=lambda b: (b.reason != "suppressed", b.since))
    return blocks[0] if blocks else None


def _block(row: Any, scope: str) -> Block | None:
    if row["type"] == "contact.opted_out":
        detail = json.loads(row["payload"]).get("keyword", "")
        return Block("opted_out", row["received_at"], detail, scope)
    if row["type"] == "contact.suppressed":
        detail = json.loads(row["payload"]).get("reason", "")
        return Block("suppressed", row["received_at"], detail, "account")
    return None
