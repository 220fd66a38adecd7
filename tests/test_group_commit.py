"""The group commit under pressure: a full queue answers 503 at once and stores nothing it
did not acknowledge; a stalled database makes requests wait, never lie."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from schema.settings import Settings
from tests.conftest import post_signed, status_form


async def test_full_queue_answers_503_at_once_and_acks_only_stored(
        settings: Settings, db: asyncpg.Connection) -> None:
    small = dataclasses.replace(settings, queue_size=5, batch_max=5)
    async with TestClient(TestServer(create_app(small))) as client:
        locker = await asyncpg.connect(settings.database_url)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # stall every commit
            tasks = [asyncio.create_task(
                post_signed(client, "/twilio/status", status_form(f"SM{i:032d}", "sent")))
                for i in range(40)]
            done, _ = await asyncio.wait(tasks, timeout=3)
            refused = [t.result() for t in done]
            assert refused and all(status == 503 for status, _ in refused)
            assert all("overloaded" in body for _, body in refused)
            await tx.rollback()
            results = await asyncio.gather(*tasks)
        finally:
            await locker.close()
    acked = {i for i, (status, _) in enumerate(results) if status == 200}
    assert acked and len(acked) <= 5 + 2 * 5  # the queue plus what the flushers held
    stored = {int(r["message_sid"][2:]) for r in await db.fetch("SELECT message_sid FROM events")}
    assert stored == acked


async def test_a_stalled_database_acks_from_the_spool_then_replays(
        settings: Settings, db: asyncpg.Connection) -> None:
    impatient = dataclasses.replace(settings, db_timeout_s=0.3)
    async with TestClient(TestServer(create_app(impatient))) as client:
        locker = await asyncpg.connect(settings.database_url)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
                status, _ = await post_signed(client, "/twilio/status",
                                              status_form("SM" + "7" * 32, "sent"))
                assert status == 200     # durable in the fsync'd spool
                ready = await (await client.get("/readyz")).json()
                assert ready["status"] == "degraded" and ready["spool_bytes"] > 0
        finally:
            await locker.close()
        for _ in range(100):             # the replayer moves it once the lock is gone
            if await db.fetchval("SELECT count(*) FROM events") == 1:
                break
            await asyncio.sleep(0.1)
        metrics = await (await client.get("/metrics")).text()
    assert [r[0] for r in await db.fetch("SELECT message_sid FROM events")] == ["SM" + "7" * 32]
    assert "smsledger_events_spooled_total 1" in metrics
    assert "smsledger_events_replayed_total 1" in metrics


async def test_disk_full_while_the_database_stalls_is_503_never_2xx(
        settings: Settings, db: asyncpg.Connection) -> None:
    impatient = dataclasses.replace(settings, db_timeout_s=0.3)
    spool_dir = settings.data_dir / "spool"
    spool_dir.mkdir(parents=True)
    (spool_dir / "current.log").symlink_to("/dev/full")   # every write: ENOSPC
    async with TestClient(TestServer(create_app(impatient))) as client:
        locker = await asyncpg.connect(settings.database_url)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
                status, body = await post_signed(client, "/twilio/status",
                                                 status_form("SM" + "6" * 32, "sent"))
        finally:
            await locker.close()
    assert status == 503 and "unavailable" in body
    await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM events") == 0
