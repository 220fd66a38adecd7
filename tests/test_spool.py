"""The spool's framing survives crashes: a torn tail is ignored, whole records are kept, and
replaying twice stores each event once."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from ingest.spool import Spool, read_segment, replay
from schema import store
from tests.factory import T0, message


async def test_torn_tail_is_ignored_and_whole_records_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    await spool.append(message(1, "+14155550100", T0))
    await spool.append(message(2, "+14155550100", T0))
    spool.close()
    whole = spool.current.stat().st_size
    with spool.current.open("ab") as f:        # a crash in the middle of a third write
        f.write(b"\x00\x00\x01\x00\x12\x34")
    events, good = read_segment(spool.current)
    assert good == whole
    assert len(events) == 6
    assert events[0].message_sid == f"SM{1:032x}" and events[0].occurred_at == T0
    # A flipped byte inside a record: that record and what follows are not trusted.
    data = bytearray(spool.current.read_bytes())
    data[20] ^= 0xFF
    spool.current.write_bytes(bytes(data))
    assert read_segment(spool.current)[0] == []


async def test_replay_is_idempotent_and_removes_only_after_commit(
        tmp_path: Path, db: asyncpg.Connection) -> None:
    spool = Spool(tmp_path / "spool")
    events = message(1, "+14155550100", T0) + message(2, "+14155550101", T0)
    await spool.append(events[:3])
    await spool.append(events[3:])

    async def insert(evs: list) -> None:  # type: ignore[type-arg]
        async with db.transaction():
            await store.append(db, evs)

    async def failing(evs: list) -> None:  # type: ignore[type-arg]
        raise OSError("connection refused")

    try:
        await replay(spool, failing)
    except OSError:
        pass
    assert spool.segments()                   # kept: nothing was committed
    assert await replay(spool, insert) == 6
    assert not spool.segments() and not spool.current.exists()
    # The same events again (a crash between commit and delete): nothing new is stored.
    await spool.append(events)
    assert await replay(spool, insert) == 6
    assert await db.fetchval("SELECT count(*) FROM events") == 6
