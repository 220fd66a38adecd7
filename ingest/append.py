"""The group commit: many requests, one transaction, every answer after the commit.

Committing once per request caps throughput at one fsync per event. Instead each request puts
its events on a bounded queue and waits; a flusher takes everything waiting (up to
``batch_max`` events), writes it with one multi-row INSERT ... ON CONFLICT DO NOTHING (one
statement, so one transaction), and only then resolves every waiting request. Under load
batches grow by themselves (more arrives while a commit is in flight), so latency stays near
one commit and throughput scales with the batch. A 2xx always means "durable in PostgreSQL".

When the queue is full the request is refused at once (503) rather than left to time out: a
classic Twilio callback that times out is lost just the same, but a fast 503 is visible.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import asyncpg

from ingest.metrics import IngestMetrics
from schema import store
from schema.events import Event

log = logging.getLogger("smsledger.ingest.append")


class Overloaded(RuntimeError):
    """The commit queue is full."""


class StoreUnavailable(RuntimeError):
    """The batch holding these events could not be committed."""


_Pending = tuple[Sequence[Event], "asyncio.Future[list[bool]]"]


class GroupCommitAppender:
    def __init__(self, pool: asyncpg.Pool, metrics: IngestMetrics, *, queue_size: int,
                 batch_max: int, timeout_s: float, flushers: int = 2) -> None:
        self._pool = pool
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._batch_max = batch_max
        self._timeout_s = timeout_s
        self._flushers = flushers
        self._tasks: list[asyncio.Task[None]] = []

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Store ``events`` durably; for each, True if new, False if it was already stored.

        Raises ``Overloaded`` when the queue is full and ``StoreUnavailable`` when the commit
        failed; in both cases nothing may be acknowledged.
        """
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((events, future))
        except asyncio.QueueFull:
            raise Overloaded("the commit queue is full") from None
        self._metrics.queue_depth.set(self._queue.qsize())
        return await future

    def start(self) -> None:
        # Two flushers: while one batch waits for its commit, the next one is being written.
        self._tasks = [asyncio.create_task(self._run(), name=f"group-commit-{i}")
                       for i in range(self._flushers)]

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and in flight, then stop the flushers (the app's cleanup)."""
        if self._tasks and not all(t.done() for t in self._tasks):
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except TimeoutError:
                log.error("shutdown: %d requests still queued after %.0f s",
                          self._queue.qsize(), timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():  # not written: fail them, never acknowledge them
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(StoreUnavailable("the ingester is shutting down"))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            while size < self._batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += len(item[0])
            self._metrics.queue_depth.set(self._queue.qsize())
            try:
                await self._flush(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _flush(self, batch: list[_Pending]) -> None:
        events = [e for evs, _ in batch for e in evs]
        try:
            new_keys = await self._write(events)
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable("the ingester is shutting down"))
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._metrics.db_errors.inc()
            log.error("group commit of %d events failed: %s", len(events), type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(type(exc).__name__))
            return
        self._metrics.batch_size.observe(len(events))
        seen: set[str] = set()
        for evs, future in batch:
            flags = []
            for e in evs:
                # The first occurrence of a key in the batch is the one that was inserted.
                is_new = e.idempotency_key in new_keys and e.idempotency_key not in seen
                seen.add(e.idempotency_key)
                flags.append(is_new)
                if is_new:
                    self._metrics.appended.inc(type=str(e.type))
                else:
                    self._metrics.duplicates.inc()
            if not future.done():
                future.set_result(flags)

    async def _write(self, events: list[Event]) -> set[str]:
        started = time.perf_counter()
        async with self._pool.acquire(timeout=self._timeout_s) as conn:
            # One statement in autocommit is one transaction: the whole batch commits or none
            # of it does, without the two extra round trips of BEGIN and COMMIT.
            new_keys = await asyncio.wait_for(store.append(conn, events), self._timeout_s)
        log.debug("committed %d events in %.1f ms", len(events),
                  (time.perf_counter() - started) * 1000)
        return new_keys
