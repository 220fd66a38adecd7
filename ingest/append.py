"""The group commit: many requests, one transaction, every answer after the commit.

Committing once per request caps throughput at one fsync per event. Instead each request puts
its events on a bounded queue and waits; a flusher takes everything waiting (up to
``batch_max`` events), writes it with one multi-row INSERT ... ON CONFLICT DO NOTHING (one
statement, so one transaction), and only then resolves every waiting request. Under load
batches grow by themselves (more arrives while a commit is in flight), so latency stays near
one commit and throughput scales with the batch. A 2xx always means "durable in PostgreSQL".

When PostgreSQL fails or is too slow, the batch goes to the local spool instead (one fsync
for the whole batch) and is acknowledged from there: "durable" then means "in the fsync'd
spool", and the replayer moves it into PostgreSQL when it answers again. For a short while after
a failure, batches go straight to the spool instead of waiting for another timeout. Only when
the spool cannot write either (disk full) do the requests get 503: never a 2xx for an event
that is nowhere.

When the queue is full the request is refused at once (503) rather than left to time out: a
classic Twilio callback that times out is lost just the same, but a fast 503 is visible.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence

import asyncpg

from ingest.metrics import IngestMetrics
from ingest.spool import Spool, SpoolUnavailable, replay
from schema import store
from schema.events import Event

log = logging.getLogger("smsledger.ingest.append")


class Overloaded(RuntimeError):
    """The commit queue is full."""


class StoreUnavailable(RuntimeError):
    """The batch holding these events could not be committed."""


class Unstorable(ValueError):
    """PostgreSQL refused these events' content (not an outage): a 4xx, never the spool."""


# PostgreSQL is unreachable, failing or too slow: the events go to the spool. (asyncpg's
# InternalClientError too: seen when the server ends a kept connection, e.g. an administrator's
# pg_terminate_backend, just as a statement starts on it.)
OUTAGE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
                 asyncpg.InternalClientError)

# PostgreSQL classes 22 (data exception) and 23 (integrity): the content, not the server.
# Retrying or spooling such a batch would fail again forever.
DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
               UnicodeEncodeError)


_Pending = tuple[Sequence[Event], "asyncio.Future[list[bool]]"]

# Two flushers: while one batch waits for its commit, the next one is being written. Each keeps
# one pool connection, so the pool needs at least one more for everything else.
FLUSHERS = 2
# A burst smaller than this is never split (see GroupCommitAppender.should_defer).
SPLIT_MIN = 8


class GroupCommitAppender:
    def __init__(self, pool: asyncpg.Pool, metrics: IngestMetrics, *, queue_size: int,
                 batch_max: int, timeout_s: float, spool: Spool | None = None,
                 flushers: int = FLUSHERS, degraded_s: float = 2.0) -> None:
        # Made inside the running loop (the app's cleanup_ctx); kept, because asking asyncio for
        # the running loop costs a getpid() system call on every request.
        self._loop = asyncio.get_running_loop()
        self._pool = pool
        self.spool = spool
        self._degraded_s = degraded_s
        self._degraded_until = 0.0
        self._metrics = metrics
        # Requests waiting for a flusher: a plain deque and one wake-up event cost a fraction of
        # asyncio.Queue's bookkeeping on the path every request takes.
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._in_flight = 0           # requests taken by a flusher and not yet answered
        self._batch_done = asyncio.Event()
        self._queue_size = queue_size
        self._batch_max = batch_max
        self._timeout_s = timeout_s
        self._flushers = flushers
        self._tasks: list[asyncio.Task[None]] = []
        # Each flusher keeps its connection between batches (taking it from the pool and
        # giving it back cost a task and several calls per commit); it goes back to the pool
        # only when a write fails, or at stop.
        self._conns: dict[int, asyncpg.pool.PoolConnectionProxy] = {}
        # Splitting bursts (should_defer): flushers waiting for work, whether a request has
        # deferred its work this turn, and the most requests queued or committing at once in
        # this second and the one before.
        self._idle_flushers = 0
        self._deferring = False
        self._load_peak = 0
        self._load_prev = 0
        self._load_until = 0.0

    def append(self, events: Sequence[Event]) -> asyncio.Future[list[bool]]:
        """Queue ``events`` for the next commit; await the answer: for each event, True if new,
        False if it was already stored.

        Raises ``Overloaded`` at once when the queue is full; the future raises
        ``StoreUnavailable`` when the commit failed. In both cases nothing may be acknowledged.
        (A plain function returning the future, not a coroutine: one frame less to create and
        resume on every request.)
        """
        if len(self._waiting) >= self._queue_size:
            raise Overloaded("the commit queue is full")
        future: asyncio.Future[list[bool]] = self._loop.create_future()
        self._waiting.append((events, future))
        self._wakeup.set()
        load = len(self._waiting) + self._in_flight
        if load > self._load_peak:
            self._load_peak = load
        return future

    def should_defer(self) -> bool:
        """True when the calling request should let one loop turn pass before its work.

        Requests come in bursts: the answers of one commit go out together and their senders'
        next requests come back together, all read in one loop turn. Appended in one go, a burst
        is one commit, and the ingester idles while PostgreSQL writes it. When half of the load
        seen lately is already queued and a flusher is waiting, the rest of the burst steps
        aside for one turn: the flusher sends the first half to PostgreSQL first, and the second
        half is parsed and checked while the first is being committed."""
        queued = len(self._waiting)
        if queued < SPLIT_MIN or not self._idle_flushers:
            return False
        now = self._loop.time()
        if now >= self._load_until:
            self._load_prev, self._load_peak, self._load_until = self._load_peak, 0, now + 1.0
        if queued * 2 >= max(self._load_peak, self._load_prev):
            self._deferring = True
            return True
        return False

    @property
    def idle_flushers(self) -> int:
        """Flushers waiting for work."""
        return self._idle_flushers

    @property
    def queued(self) -> int:
        """Requests waiting for a flusher."""
        return len(self._waiting)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i), name=f"group-commit-{i}")
                       for i in range(self._flushers)]
        if self.spool is not None:
            self._tasks.append(asyncio.create_task(self._replayer(), name="spool-replayer"))

    @property
    def degraded(self) -> bool:
        """PostgreSQL failed recently, or spooled events are still waiting for it."""
        return time.monotonic() < self._degraded_until or bool(
            self.spool is not None and self.spool.depth_events)

    async def _replayer(self) -> None:
        assert self.spool is not None
        while True:
            await asyncio.sleep(1.0)
            if not self.spool.pending_bytes():
                self._update_spool_metrics()
                continue
            try:
                replayed = await replay(self.spool, self._insert_spooled)
            except OUTAGE_ERRORS as exc:
                self._degraded_until = time.monotonic() + self._degraded_s
                log.warning("spool replay waits for PostgreSQL: %s", type(exc).__name__)
            else:
                self._metrics.replayed.inc(replayed)
            self._update_spool_metrics()

    async def _insert_spooled(self, events: list[Event]) -> None:
        async with self._pool.acquire(timeout=self._timeout_s) as conn:
            try:
                await asyncio.wait_for(store.append(conn, events), self._timeout_s * 4)
                return
            except DATA_ERRORS:
                pass
            # Some spooled event cannot be stored: set it aside (kept, logged) instead of
            # retrying the whole segment forever.
            for event in events:
                try:
                    await store.append(conn, [event])
                except DATA_ERRORS as exc:
                    assert self.spool is not None
                    await asyncio.to_thread(self.spool.set_aside, event)
                    log.error("spooled event %s cannot be stored (%s); set aside in %s",
                              event.idempotency_key[:60], type(exc).__name__,
                              self.spool.directory / "rejected.log")

    def _update_spool_metrics(self) -> None:
        if self.spool is not None:
            self._metrics.spool_bytes.set(self.spool.pending_bytes())
            self._metrics.spool_events.set(self.spool.depth_events)
        self._metrics.degraded.set(1 if self.degraded else 0)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and in flight, then stop the flushers (the app's cleanup)."""
        if self._tasks and not all(t.done() for t in self._tasks):
            try:
                async with asyncio.timeout(timeout_s):
                    while self._waiting or self._in_flight:
                        self._batch_done.clear()
                        await self._batch_done.wait()
            except TimeoutError:
                log.error("shutdown: %d requests still queued after %.0f s",
                          len(self._waiting) + self._in_flight, timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._conns:
            await self._pool.release(self._conns.popitem()[1])
        while self._waiting:  # not written: fail them, never acknowledge them
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(StoreUnavailable("the ingester is shutting down"))

    @property
    def flushers_running(self) -> int:
        """Flusher tasks alive (each outlives any one batch)."""
        return sum(1 for task in self._tasks[:self._flushers] if not task.done())

    @property
    def connections_held(self) -> int:
        """Connections the flushers keep between batches (at most one each)."""
        return len(self._conns)

    async def _run(self, slot: int) -> None:
        waiting = self._waiting
        while True:
            if not waiting:
                self._idle_flushers += 1
                try:
                    while not waiting:
                        self._wakeup.clear()
                        await self._wakeup.wait()
                finally:
                    self._idle_flushers -= 1
                if self._deferring:
                    # The rest of a burst stepped aside (should_defer): take what is queued now.
                    self._deferring = False
                else:
                    # Woken by the first request of a new batch: let one turn of the event
                    # loop pass first, so that the requests being read in this same turn join
                    # it (fewer, larger commits: less PostgreSQL CPU per event); a lone request
                    # waits one loop turn (microseconds).
                    await asyncio.sleep(0)
                if not waiting:  # every idle flusher wakes: another one took them all
                    continue
            batch = [waiting.popleft()]
            size = len(batch[0][0])
            while size < self._batch_max and waiting:
                item = waiting.popleft()
                batch.append(item)
                size += len(item[0])
            await self._commit(batch, slot)

    async def _commit(self, batch: list[_Pending], slot: int) -> None:
        self._in_flight += len(batch)
        try:
            await self._flush(batch, slot)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 (the flusher must outlive any one batch)
            log.exception("group commit failed unexpectedly; its requests get 503")
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable("unexpected failure"))
        finally:
            self._in_flight -= len(batch)
            self._batch_done.set()

    async def _flush(self, batch: list[_Pending], slot: int) -> None:
        events = [e for evs, _ in batch for e in evs]
        if time.monotonic() < self._degraded_until:   # failed moments ago: don't wait again
            await self._spool_or_fail(batch, events)
            return
        try:
            new_keys = await self._write(events, slot)
        except DATA_ERRORS as exc:
            log.error("PostgreSQL refused a batch's content (%s): storing it request by "
                      "request", type(exc).__name__)
            await self._isolate(batch, slot)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable("the ingester is shutting down"))
            raise
        except OUTAGE_ERRORS as exc:
            self._metrics.db_errors.inc()
            log.error("group commit of %d events failed: %s", len(events), type(exc).__name__)
            self._degraded_until = time.monotonic() + self._degraded_s
            await self._spool_or_fail(batch, events)
            return
        self._metrics.batch_size.observe(len(events))
        stored: collections.Counter[str]
        duplicates = 0
        if len(new_keys) == len(events):
            # The usual batch: every event new and no key twice, so no per-event bookkeeping.
            for evs, future in batch:
                if not future.done():
                    future.set_result([True] * len(evs))
            stored = collections.Counter(e.type for e in events)
        else:
            stored = collections.Counter()
            seen: set[str] = set()
            for evs, future in batch:
                flags = []
                for e in evs:
                    # The first occurrence of a key in the batch is the one that was inserted.
                    key = e.idempotency_key
                    is_new = key in new_keys and key not in seen
                    seen.add(key)
                    flags.append(is_new)
                    if is_new:
                        stored[e.type] += 1
                    else:
                        duplicates += 1
                if not future.done():
                    future.set_result(flags)
        for kind, count in stored.items():
            self._metrics.appended.labels(type=kind).inc(count)
        if duplicates:
            self._metrics.duplicates.inc(duplicates)

    async def _isolate(self, batch: list[_Pending], slot: int) -> None:
        """One request at a time, so that one unstorable event costs only its own request."""
        for evs, future in batch:
            if future.done():
                continue
            try:
                new_keys = await self._write(list(evs), slot)
            except DATA_ERRORS as exc:
                future.set_exception(Unstorable(type(exc).__name__))
                continue
            except OUTAGE_ERRORS:
                await self._spool_or_fail([(evs, future)], list(evs))
                continue
            future.set_result([e.idempotency_key in new_keys for e in evs])

    async def _spool_or_fail(self, batch: list[_Pending], events: list[Event]) -> None:
        """PostgreSQL did not take the batch: make it durable in the spool, or refuse it."""
        try:
            if self.spool is None:
                raise SpoolUnavailable("no spool configured")
            await self.spool.append(events)
        except SpoolUnavailable as exc:
            log.error("spool unavailable too (%s): %d events refused", exc, len(events))
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable("PostgreSQL and the spool failed"))
            return
        self._metrics.spooled.inc(len(events))
        self._update_spool_metrics()
        for evs, future in batch:
            if not future.done():
                future.set_result([True] * len(evs))

    async def _write(self, events: list[Event], slot: int) -> set[str]:
        started = time.perf_counter()
        conn = self._conns.get(slot)
        try:
            # One deadline for taking a connection and committing (asyncio.timeout: no extra
            # task per batch, as wait_for and the pool's own acquire timeout would create).
            async with asyncio.timeout(self._timeout_s):
                if conn is None or conn.is_closed():
                    await self._give_back(slot)  # closed by the server while kept
                    conn = self._conns[slot] = await self._pool.acquire()
                # One statement in autocommit is one transaction: the whole batch commits or
                # none of it does, without the two extra round trips of BEGIN and COMMIT.
                new_keys = await store.append(conn, events)
        except BaseException:
            # Whatever went wrong (an outage, a timeout mid-statement, refused content,
            # shutdown), the connection goes back to the pool, which rolls back, waits out a
            # cancelled statement or closes a broken connection; the next batch takes a fresh one.
            await self._give_back(slot)
            raise
        log.debug("committed %d events in %.1f ms", len(events),
                  (time.perf_counter() - started) * 1000)
        return new_keys

    async def _give_back(self, slot: int) -> None:
        """Return the connection ``slot``'s flusher keeps, if any, to the pool."""
        held = self._conns.pop(slot, None)
        if held is not None:
            with contextlib.suppress(Exception):  # the batch's own error is the one to tell
                await self._pool.release(held)
