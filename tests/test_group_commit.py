"""The group commit under pressure: a full queue answers 503 at once and stores nothing it
did not acknowledge; a stalled database makes requests wait, never lie."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from schema.settings import Settings
from tests.conftest import post_signed, status_form, until


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
    # The app has shut down (its flushers drained and stopped): nothing can arrive later.
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_unstorable_content_costs_only_its_own_request(
        settings: Settings, db: asyncpg.Connection) -> None:
    """Past the input checks (a bug, a new field): PostgreSQL refuses one event's content.
    Its request fails with Unstorable; the others in the same batch are stored; nothing is
    spooled; the flushers keep serving."""
    from ingest.append import GroupCommitAppender, Unstorable
    from ingest.metrics import IngestMetrics
    from ingest.spool import Spool
    from tests.factory import T0, status

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    spool = Spool(settings.data_dir / "spool")
    appender = GroupCommitAppender(pool, IngestMetrics(), queue_size=100, batch_max=100,
                                   timeout_s=2, spool=spool)
    appender.start()
    try:
        good = [status(f"SM{i:032x}", "+14155550123", "sent", T0) for i in range(3)]
        bad = good[0]._replace(idempotency_key="bad", payload={"x": "nul\x00"})
        results = await asyncio.gather(*(appender.append([e]) for e in [good[0], bad, *good[1:]]),
                                       return_exceptions=True)
        assert isinstance(results[1], Unstorable)
        assert [r for i, r in enumerate(results) if i != 1] == [[True]] * 3
        assert await appender.append([status("SM" + "f" * 32, "+1415", "sent", T0)]) == [True]
    finally:
        await appender.stop()
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM events") == 4
    assert not spool.segments() and not spool.current.exists()


async def test_an_unstorable_spooled_event_is_set_aside_not_retried_forever(
        settings: Settings, db: asyncpg.Connection) -> None:
    from ingest.append import GroupCommitAppender
    from ingest.metrics import IngestMetrics
    from ingest.spool import Spool, read_segment, replay
    from tests.factory import T0, status

    spool = Spool(settings.data_dir / "spool")
    good = status("SM" + "a" * 32, "+14155550123", "sent", T0)
    bad = good._replace(idempotency_key="bad", payload={"x": "nul\x00"})
    await spool.append([good, bad])
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    appender = GroupCommitAppender(pool, IngestMetrics(), queue_size=10, batch_max=10,
                                   timeout_s=2, spool=spool)
    try:
        assert await replay(spool, appender._insert_spooled) == 2
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    kept, _ = read_segment(spool.directory / "rejected.log")
    assert [e.idempotency_key for e in kept] == ["bad"]
    assert not spool.segments()


async def test_flushers_keep_their_connections_and_replace_a_broken_one(
        settings: Settings, db: asyncpg.Connection) -> None:
    """Each flusher keeps its connection between commits; when PostgreSQL drops it, that batch
    goes to the spool (acknowledged, never lost), the next one takes a fresh connection, and
    the spooled event reaches PostgreSQL. Even with SMSLEDGER_DB_POOL_SIZE=1 the pool leaves a
    connection for everything else (readiness)."""
    tiny = dataclasses.replace(settings, db_pool_size=1)
    app = create_app(tiny)
    async with TestClient(TestServer(app)) as client:
        from ingest.webhooks import APPENDER
        appender = app[APPENDER]
        for i in range(3):
            status, _ = await post_signed(client, "/twilio/status",
                                          status_form(f"SM{i:032d}", "sent"))
            assert status == 200
        assert 1 <= appender.connections_held <= 2
        ready = await (await client.get("/readyz")).json()
        assert ready["status"] == "ready"
        terminated = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert terminated >= appender.connections_held
        for i in range(3, 9):     # the first of these may meet a dead connection
            status, _ = await post_signed(client, "/twilio/status",
                                          status_form(f"SM{i:032d}", "sent"))
            assert status == 200
        for _ in range(100):      # spooled ones are replayed within seconds
            if await db.fetchval("SELECT count(*) FROM events") == 9:
                break
            await asyncio.sleep(0.1)
        for _ in range(100):      # ready again once the spool is empty and a moment has passed
            if (await (await client.get("/readyz")).json())["status"] == "ready":
                break
            await asyncio.sleep(0.1)
        status, _ = await post_signed(client, "/twilio/status",
                                      status_form(f"SM{9:032d}", "sent"))
        assert status == 200
        assert appender.connections_held >= 1   # committed directly, on a fresh connection
    stored = {r[0] for r in await db.fetch("SELECT message_sid FROM events")}
    assert stored == {f"SM{i:032d}" for i in range(10)}


async def test_every_flusher_outlives_a_burst(settings: Settings, db: asyncpg.Connection) -> None:
    """Bursts wake every idle flusher at once; the one that finds the queue already taken goes
    back to waiting (it must not fail on the empty queue and leave fewer flushers)."""
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        from ingest.webhooks import APPENDER
        appender = app[APPENDER]
        for burst in range(3):
            results = await asyncio.gather(*(
                post_signed(client, "/twilio/status", status_form(f"SM{burst}{i:031d}", "sent"))
                for i in range(30)))
            assert all(status == 200 for status, _ in results)
            await until(lambda: appender.idle_flushers == 2)   # both back to waiting
        assert appender.flushers_running == 2
    assert await db.fetchval("SELECT count(*) FROM events") == 90


async def test_a_burst_is_split_so_its_first_half_commits_first(
        settings: Settings, db: asyncpg.Connection) -> None:
    """With flushers waiting and half of the recent load queued, further requests step aside
    for one loop turn (should_defer); the queued half is committed on its own, then the rest,
    and every request is answered and stored."""
    from ingest.append import SPLIT_MIN, GroupCommitAppender
    from ingest.metrics import IngestMetrics
    from tests.factory import T0, status

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    metrics = IngestMetrics()
    appender = GroupCommitAppender(pool, metrics, queue_size=100, batch_max=100, timeout_s=5)
    appender.start()
    try:
        await until(lambda: appender.idle_flushers == 2)   # both flushers waiting for work
        assert not appender.should_defer()          # nothing queued: never
        first = [appender.append([status(f"SM{i:032x}", "+14155550123", "sent", T0)])
                 for i in range(SPLIT_MIN - 1)]
        assert not appender.should_defer()          # fewer than SPLIT_MIN queued: never
        first += [appender.append([status(f"SM{i:032x}", "+14155550123", "sent", T0)])
                  for i in range(SPLIT_MIN - 1, 2 * SPLIT_MIN)]  # a burst's first half
        assert appender.should_defer()              # so the second half steps aside

        async def late(i: int) -> list[bool]:
            await asyncio.sleep(0)                  # what a deferred request does
            return await appender.append([status(f"SM{i:032x}", "+14155550123", "sent", T0)])

        second = [asyncio.create_task(late(i)) for i in range(2 * SPLIT_MIN, 4 * SPLIT_MIN)]
        assert await asyncio.gather(*first, *second) == [[True]] * (4 * SPLIT_MIN)
    finally:
        await appender.stop()
        await pool.close()
    assert metrics.registry.get_sample_value("smsledger_commit_batch_events_count") == 2  # halves
    assert await db.fetchval("SELECT count(*) FROM events") == 4 * SPLIT_MIN
