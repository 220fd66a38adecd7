"""The event store's guarantees: immutability, idempotent migrations, gap-free reading (through
the rollup's own reader)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.reader import fetch_batch
from analytics.reader import prepare as reader_session
from schema import store
from schema.events import Event, EventType, Source
from schema.migrate import Migration, MigrationError, load_migrations, migrate
from schema.store import as_json_rows
from smsledger import devdb


class Seen(NamedTuple):
    idempotency_key: str
    tx_id: int
    position: int


async def read_after(conn: asyncpg.Connection, cursor: store.Cursor, limit: int) -> list[Seen]:
    """What the rollup's reader (analytics.reader.fetch_batch) gives after ``cursor``, with each
    event's key looked up by its position."""
    await reader_session(conn)
    table = (await fetch_batch(conn, cursor, limit)).table
    positions = table["position"].to_pylist()
    keys = dict(await conn.fetch("SELECT position, idempotency_key FROM events "
                                 "WHERE position = ANY($1::bigint[])", positions))
    return [Seen(keys[p], tx, p) for p, tx in zip(positions, table["tx_id"].to_pylist(),
                                                   strict=True)]


def event(key: str, **kw: object) -> Event:
    now = datetime.now(UTC)
    fields: dict[str, object] = dict(type=EventType.MESSAGE_STATUS, idempotency_key=key,
                                     source=Source.WEBHOOK, occurred_at=now, received_at=now,
                                     payload={"k": key}, message_sid="SM1", status="sent")
    fields.update(kw)
    return Event(**fields)  # type: ignore[arg-type]


async def test_update_delete_truncate_raise(db: asyncpg.Connection) -> None:
    async with db.transaction():
        await store.append(db, [event("a")])
    for statement in ["UPDATE events SET status = 'delivered'", "DELETE FROM events",
                      "TRUNCATE events"]:
        with pytest.raises(asyncpg.RestrictViolationError, match="events are immutable"):
            await db.execute(statement)
    assert await db.fetchval("SELECT status FROM events") == "sent"


async def test_application_role_may_only_read_and_append(db: asyncpg.Connection) -> None:
    async with db.transaction():
        await db.execute("SET LOCAL ROLE smsledger_app")
        await store.append(db, [event("b")])
        assert await db.fetchval("SELECT count(*) FROM events") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")


async def test_migrations_applied_twice_change_nothing(db: asyncpg.Connection) -> None:
    async def snapshot() -> list[tuple[object, ...]]:
        rows = await db.fetch("SELECT table_name, column_name, data_type FROM "
                              "information_schema.columns WHERE table_schema = 'public' "
                              "ORDER BY 1, 2")
        return [tuple(r) for r in rows]

    before = await snapshot()
    ledger = await db.fetch("SELECT * FROM schema_migrations ORDER BY version")
    assert await migrate(db) == []
    assert await migrate(db) == []
    assert await snapshot() == before
    assert await db.fetch("SELECT * FROM schema_migrations ORDER BY version") == ledger
    assert [r["version"] for r in ledger] == [m.version for m in load_migrations()]


async def test_a_changed_applied_migration_is_refused(db: asyncpg.Connection) -> None:
    first = load_migrations()[0]
    edited = dataclasses.replace(first, sql=first.sql + "\n-- edited")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        await migrate(db, [edited])


async def test_a_new_migration_is_applied_once(db: asyncpg.Connection) -> None:
    extra = Migration(9999, "test_extra", "CREATE TABLE test_extra (x int)")
    assert [m.version for m in await migrate(db, [*load_migrations(), extra])] == [9999]
    assert await migrate(db, [*load_migrations(), extra]) == []
    assert await db.fetchval("SELECT to_regclass('test_extra')::text") == "test_extra"


async def test_the_consent_lookup_has_an_index_of_contact_facts_only(
        db: asyncpg.Connection) -> None:
    phone = "+14155550177"
    opted_out = event("out", type=EventType.CONTACT_OPTED_OUT, phone=phone,
                      payload={"keyword": "STOP"}, status=None)
    await store.append(db, [event(f"s{i}", phone=phone) for i in range(50)] + [opted_out])
    await db.execute("ANALYZE events")
    # The index holds the one contact fact, not the fifty status callbacks of the same phone.
    entries = await db.fetchval("SELECT reltuples FROM pg_class "
                                "WHERE relname = 'events_contact_phone'")
    assert entries == 1
    assert await db.fetchval("SELECT to_regclass('events_phone_type')") is None
    await db.execute("SET enable_seqscan = off")  # a table this small would be read whole
    plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + store.sql("contact_state"),
                                                    phone))
    assert "events_contact_phone" in plan
    block = await store.send_block(db, phone)
    assert block is not None and (block.reason, block.detail) == ("opted_out", "STOP")


async def test_duplicate_keys_insert_once(db: asyncpg.Connection) -> None:
    async with db.transaction():
        new = await store.append(db, [event("k1"), event("k1"), event("k2")])
    assert new == {"k1", "k2"}
    async with db.transaction():
        assert await store.append(db, [event("k1")]) == set()
    assert await db.fetchval("SELECT count(*) FROM events") == 2


async def test_a_transaction_in_another_database_does_not_hold_the_reader_back(
        db_url: str, pg_server: devdb.Database) -> None:
    """The horizon is this database's: a writing transaction left open in another database on
    the same server (which can never write here) does not stop the reader, while one open
    here still does."""
    elsewhere = await asyncpg.connect(pg_server.url)      # the server's admin database
    reader = await asyncpg.connect(db_url)
    here = await asyncpg.connect(db_url)
    try:
        other_tx = elsewhere.transaction()
        await other_tx.start()
        await elsewhere.fetchval("SELECT pg_current_xact_id()")   # it holds a transaction id
        await store.append(reader, [event("after-the-other")])
        seen = await read_after(reader, store.Cursor(), 100)
        assert [e.idempotency_key for e in seen] == ["after-the-other"]

        here_tx = here.transaction()
        await here_tx.start()
        await store.append(here, [event("open-here")])
        await store.append(reader, [event("behind-it")])
        cursor = store.Cursor(seen[-1].tx_id, seen[-1].position)
        assert await read_after(reader, cursor, 100) == []   # held back: same database
        await here_tx.commit()
        assert [e.idempotency_key for e in await read_after(reader, cursor, 100)] == \
            ["open-here", "behind-it"]
        await other_tx.rollback()
    finally:
        for conn in (elsewhere, reader, here):
            await conn.close()


async def test_reader_never_passes_an_uncommitted_event(db_url: str) -> None:
    """The gap: a transaction takes a position, a later one commits first. A reader that
    trusted positions alone would move past the first and never see it."""
    slow = await asyncpg.connect(db_url)
    fast = await asyncpg.connect(db_url)
    reader = await asyncpg.connect(db_url)
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        await store.append(slow, [event("slow")])           # lower position, not committed
        async with fast.transaction():
            await store.append(fast, [event("fast-1"), event("fast-2")])

        seen = await read_after(reader, store.Cursor(), 100)
        assert [e.idempotency_key for e in seen] == []       # held back by the open tx
        positions = await reader.fetch("SELECT idempotency_key FROM events ORDER BY position")
        assert [r[0] for r in positions] == ["fast-1", "fast-2"]

        await slow_tx.commit()
        seen = await read_after(reader, store.Cursor(), 100)
        assert [e.idempotency_key for e in seen] == ["slow", "fast-1", "fast-2"]

        cursor = store.Cursor(seen[-1].tx_id, seen[-1].position)
        assert await read_after(reader, cursor, 100) == []
        partial = store.Cursor(seen[0].tx_id, seen[0].position)
        assert [e.idempotency_key for e in await read_after(reader, partial, 1)] == \
            ["fast-1"]
    finally:
        for conn in (slow, fast, reader):
            await conn.close()


async def test_what_the_fast_encoder_refuses_is_still_stored_exactly(
        db: asyncpg.Connection) -> None:
    """orjson takes no integer over 64 bits: such a batch goes through the standard library's
    encoder and every value, the huge one and the times included, arrives unchanged."""
    huge = 2**70 + 1
    evs = [event("big", payload={"n": huge, "text": "ok"}), event("small")]
    assert await store.append(db, evs) == {"big", "small"}
    rows = await db.fetch("SELECT payload, occurred_at FROM events ORDER BY position")
    assert json.loads(rows[0]["payload"]) == {"n": huge, "text": "ok"}
    assert [r["occurred_at"] for r in rows] == [e.occurred_at for e in evs]


def _stdlib_rows(evs: list[Event]) -> object:
    """The batch as the standard library's encoder writes it (the reference)."""
    def when(value: datetime) -> str:
        return value.isoformat() + ("" if value.tzinfo else "+00:00")
    return json.loads(json.dumps(
        [[e.idempotency_key, e.type, e.version, e.source, e.message_sid, e.phone, e.status,
          e.error_code, when(e.occurred_at), when(e.received_at), e.payload] for e in evs],
        ensure_ascii=False))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
_offsets = st.sampled_from([None, UTC, timezone(timedelta(hours=-7)),
                            timezone(timedelta(hours=5, minutes=45))])


@settings(max_examples=300, deadline=None)
@given(payload=st.dictionaries(st.text(), _json_values, max_size=4),
       moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
       offset=_offsets, code=st.none() | st.integers(0, 2**31 - 1), text=st.text())
def test_the_batch_encoding_says_what_the_standard_library_says(
        payload: dict[str, object], moment: datetime, offset: timezone | None,
        code: int | None, text: str) -> None:
    """Whichever encoder writes the batch (orjson, or the standard library for what orjson
    refuses), the JSON means exactly what the standard library's would: every value and every
    time, to the microsecond and with its offset."""
    when = moment.replace(tzinfo=offset)
    evs = [event(text or "k", payload=payload, occurred_at=when, received_at=when,
                 error_code=code, phone=text or None),
           event("other", occurred_at=when)]
    assert json.loads(as_json_rows(evs)) == _stdlib_rows(evs)


async def test_every_column_round_trips_through_the_batch_encoding(
        db: asyncpg.Connection) -> None:
    """Events travel to PostgreSQL as one JSON text per batch: each typed column, the payload
    and both times (microseconds, any offset; a naive time taken as UTC) arrive unchanged, in
    order."""
    plus_five = timezone(timedelta(hours=5, minutes=30))
    occurred = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=plus_five)
    naive = datetime(2026, 3, 4, 1, 2, 3, 999999)
    evs = [event("r1", occurred_at=occurred, phone="+14155550123", error_code=30003,
                 status="undelivered", version=2, payload={"Body": "héllo ✓", "n": [1, None]}),
           event("r2", received_at=naive, message_sid=None, phone=None, status=None,
                 error_code=None, type=EventType.CONTACT_OPTED_OUT, source=Source.API)]
    assert await store.append(db, evs) == {"r1", "r2"}
    rows = await db.fetch("SELECT * FROM events ORDER BY position")
    assert [r["idempotency_key"] for r in rows] == ["r1", "r2"]
    first, second = rows
    assert first["occurred_at"] == occurred
    assert first["received_at"] == evs[0].received_at
    assert (first["type"], first["version"], first["source"], first["message_sid"],
            first["phone"], first["status"], first["error_code"]) == \
        ("message.status", 2, "webhook", "SM1", "+14155550123", "undelivered", 30003)
    assert json.loads(first["payload"]) == {"Body": "héllo ✓", "n": [1, None]}
    assert second["received_at"] == naive.replace(tzinfo=UTC)
    assert (second["type"], second["source"], second["message_sid"], second["phone"],
            second["status"], second["error_code"]) == \
        ("contact.opted_out", "api", None, None, None, None)
