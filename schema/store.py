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
import orjson

from schema.events import Event, timestamp_text


@cache
def sql(name: str) -> str:
    """The text of ``schema/sql/<name>.sql``."""
    return resources.files("schema").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def as_json_rows(events: Sequence[Event]) -> str:
    """The batch as one JSON array of rows, in the column order of ``schema/sql/append.sql``.

    One JSON text per batch instead of eleven typed arrays, unpacked by PostgreSQL with
    ``jsonb_array_elements``. Written by orjson, which also formats the times (RFC 3339 with
    the offset; a naive time as UTC): about a fifth of the standard library's cost per event.
    What orjson refuses (an integer over 64 bits, a lone surrogate, a type it does not know)
    goes through the standard library's encoder instead, as before: text that cannot be stored
    (NUL, a lone surrogate) still fails the statement as a data error (class 22) or as
    ``UnicodeEncodeError``."""
    rows: list[list[Any]] = [
        [e.idempotency_key, e.type, e.version, e.source, e.message_sid, e.phone, e.status,
         e.error_code, e.occurred_at, e.received_at, e.payload] for e in events]
    try:
        return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()
    except orjson.JSONEncodeError:
        pass
    for row in rows:
        row[8], row[9] = timestamp_text(row[8]), timestamp_text(row[9])
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


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
class Block:
    """Why a number may not be texted: opted out, or suppressed by a hygiene rule or a user."""
    reason: str          # "opted_out" or "suppressed"
    since: datetime
    detail: str          # the keyword or the suppression reason
    scope: str = "account"   # "account", "messaging_service:MG...", "sender:+1..."


async def consent_since(conn: asyncpg.Connection, phone: str) -> datetime | None:
    """When the fact behind ``phone``'s current consent state (the latest opt-out or opt-in)
    happened, or None if it has none."""
    for row in await conn.fetch(sql("contact_state"), phone):
        if row["kind"] == "consent":
            since: datetime = row["occurred_at"]
            return since
    return None


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


@dataclasses.dataclass(frozen=True, slots=True)
class OtpState:
    """A message as /v1/otp/confirm sees it."""
    sent: bool               # a message.sent is stored for it
    phone: str | None
    category: str | None
    confirmed: bool          # otp.confirmed is already stored


async def otp_state(conn: asyncpg.Connection, sid: str) -> OtpState:
    rows = await conn.fetch(sql("otp_confirm_state"), sid)
    sent = [r for r in rows if r["type"] == "message.sent"]
    return OtpState(sent=bool(sent), phone=sent[0]["phone"] if sent else None,
                    category=sent[0]["category"] if sent else None,
                    confirmed=any(r["type"] == "otp.confirmed" for r in rows))


async def lock_for(conn: asyncpg.Connection, key: str) -> None:
    """A transaction-scoped advisory lock on ``key``: one holder at a time across every
    process on this database, released at commit or rollback."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
