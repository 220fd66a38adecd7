"""Reconciliation and backfill through Twilio's Messages API.

Classic status callbacks are at-most-once: one Twilio failed to deliver is gone. So, every few
minutes, every message sent more than ``after`` ago with no terminal status yet is fetched and
its status appended (``source=reconcile``); the keys are the webhook's, so a callback that
did arrive meanwhile makes it a no-op. Recent Message resources smsledger never heard of
(create-time failures such as 21610 are stored as resources too, and sends made elsewhere) are
listed and appended as well.

Backfill imports history the same way, page by page, resumable from a checkpoint file, or
from Bulk Export day files (gzip JSON lines).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from twilio.base.exceptions import TwilioRestException

from schema import store
from schema.events import TERMINAL_STATUSES, Event, InvalidEvent, Source
from schema.named_sql import named
from schema.private_files import private_dir, write_private
from schema.sources.messages_api import api_message, consent_from_resource

log = logging.getLogger("smsledger.analytics.reconcile")

FIELDS = ("sid", "body", "status", "error_code", "num_segments", "num_media", "direction",
          "messaging_service_sid", "date_created", "date_sent", "date_updated", "to", "price",
          "price_unit", "account_sid")



def _sql(name: str) -> str:
    return named("analytics", "sql/reconcile.sql")[name]


def resource(instance: Any) -> dict[str, Any]:
    """A twilio ``MessageInstance`` as the Message resource's JSON fields."""
    out = {name: getattr(instance, name, None) for name in FIELDS}
    out["from"] = getattr(instance, "from_", None)
    return out


@dataclasses.dataclass
class ReconcileResult:
    checked: int = 0
    statuses: int = 0
    unknown_found: int = 0
    events: int = 0


async def reconcile(client: Any, pg: asyncpg.Connection, *, after: timedelta,
                    max_age: timedelta = timedelta(days=3), limit: int = 500,
                    list_recent: bool = True) -> ReconcileResult:
    now = datetime.now(UTC)
    result = ReconcileResult()
    sids = [r["message_sid"] for r in await pg.fetch(
        _sql("unsettled"), now - max_age, now - after, sorted(TERMINAL_STATUSES), limit)]
    events: list[Event] = []
    for sid in sids:
        try:
            message = await client.messages(sid).fetch_async()
        except TwilioRestException as exc:
            log.warning("reconcile: Twilio %s for a message (%s)", exc.status, exc.code)
            continue
        result.checked += 1
        found = [e for e in api_message(resource(message), Source.RECONCILE)
                 if e.type in ("message.status", "message.priced")]
        result.statuses += len(found)
        events.extend(found)
    if list_recent:
        recent: list[dict[str, Any]] = []
        page = await client.messages.page_async(page_size=min(1000, limit))
        while page is not None:
            stop = False
            for instance in page:
                item = resource(instance)
                created = item["date_created"]
                if isinstance(created, datetime) and created < now - max_age:
                    stop = True
                    break
                recent.append(item)
            if stop or len(recent) >= limit or not page.next_page_url:
                break
            page = await page.next_page_async()
        known = {r["message_sid"] for r in await pg.fetch(
            _sql("known_messages"), [m["sid"] for m in recent])}
        for item in recent:
            if item["sid"] not in known:
                result.unknown_found += 1
                events.extend(api_message(item, Source.RECONCILE))
        events.extend(await consent_changes(pg, recent))
    result.events = len(await store.append(pg, events))
    return result


async def consent_changes(pg: asyncpg.Connection, recent: list[dict[str, Any]]) -> list[Event]:
    """STOPs and STARTs among Twilio's recent inbound messages that are newer than their
    number's consent state, oldest first. The ingester applies an opt-in only once Twilio
    confirms its message; when Twilio was unreachable then, the opt-in is applied here (and a
    STOP whose webhook never came, too). Keys are the webhook's: one applied already is a
    no-op."""
    changes = [c for c in (consent_from_resource(m, Source.RECONCILE) for m in recent) if c]
    changes.sort(key=lambda c: c.occurred_at)
    since: dict[str, datetime | None] = {}
    kept = []
    for change in changes:
        phone = str(change.phone)
        if phone not in since:
            since[phone] = await store.consent_since(pg, phone)
        latest = since[phone]
        if latest is None or change.occurred_at >= latest:
            kept.append(change)
            since[phone] = change.occurred_at
    return kept


@dataclasses.dataclass
class BackfillResult:
    messages: int = 0
    events: int = 0
    pages: int = 0


def _progress(result: BackfillResult, done: bool = False) -> None:
    end = "\n" if done else ""
    sys.stderr.write(f"\rbackfill: {result.messages:,} messages, {result.events:,} new events, "
                     f"{result.pages} pages{end}")
    sys.stderr.flush()


def _load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    saved: dict[str, Any] = json.loads(path.read_text())
    return saved


def _save_checkpoint(path: Path, next_page_url: str | None) -> None:
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    write_private(tmp, json.dumps({"next_page_url": next_page_url}).encode())
    tmp.replace(path)


async def backfill_api(client: Any, pg: asyncpg.Connection, since: datetime,
                       until: datetime | None, checkpoint: Path,
                       page_size: int = 1000) -> BackfillResult:
    """Every message sent in [since, until), page by page. After each page's commit the next
    page's URL is saved in ``checkpoint``: an interrupted backfill resumes where it stopped,
    and a repeated one stores nothing twice."""
    result = BackfillResult()
    saved = await asyncio.to_thread(_load_checkpoint, checkpoint)
    if saved.get("next_page_url"):
        page = await client.messages.get_page_async(saved["next_page_url"])
        log.info("backfill resumes from its checkpoint")
    else:
        kwargs: dict[str, Any] = {"date_sent_after": since, "page_size": page_size}
        if until is not None:
            kwargs["date_sent_before"] = until
        page = await client.messages.page_async(**kwargs)
    while page is not None:
        events: list[Event] = []
        for instance in page:
            result.messages += 1
            events.extend(api_message(resource(instance), Source.BACKFILL))
        result.events += len(await store.append(pg, events))
        result.pages += 1
        await asyncio.to_thread(_save_checkpoint, checkpoint, page.next_page_url)
        _progress(result)
        if not page.next_page_url:
            break
        page = await page.next_page_async()
    await asyncio.to_thread(checkpoint.unlink, True)
    _progress(result, done=True)
    return result


def _bulk_lines(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidEvent(
                        f"{path.name} line {number}: not JSON ({exc.msg})") from None


async def backfill_files(pg: asyncpg.Connection, paths: list[Path]) -> BackfillResult:
    """Bulk Export day files: gzip JSON lines, one Message resource a line. A bad line stops
    the import with its file and line number; what was committed before it stays."""
    result = BackfillResult()
    for path in paths:
        events: list[Event] = []
        for number, item in _bulk_lines(path):
            try:
                events.extend(api_message(item, Source.BACKFILL))
            except InvalidEvent as exc:
                raise InvalidEvent(f"{path.name} line {number}: {exc}") from None
            result.messages += 1
            if len(events) >= 5000:
                result.events += len(await store.append(pg, events))
                events = []
        result.events += len(await store.append(pg, events))
        result.pages += 1
        _progress(result)
    _progress(result, done=True)
    return result

