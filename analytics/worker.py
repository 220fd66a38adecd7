"""The analytics worker: rollup every N seconds, Lookup enrichment, the hygiene report and the
lake's compaction on a schedule. One leader at a time.

Every batch's commit is at once visible to readers (the lake is the publication: nothing is
copied); the first successful round names the lake in the pointer file readers open. When the
catalog database is unreachable, the worker logs it and tries again every interval (``once``:
it gives up with the error).

Leadership is a PostgreSQL advisory lock held by the worker's connection: a second worker waits
for it (it never opens the DuckDB file meanwhile, so it cannot double-apply), and takes over
when the first one's connection goes away, crash included. SIGTERM or SIGINT lets the current
batch finish, then the worker exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from twilio.base.exceptions import TwilioException

from analytics import enrich
from analytics import lake as lakes
from analytics.alerting import Alerting, AlertsConfig
from analytics.compact import compact
from analytics.hygiene import HygieneRules
from analytics.lake import CatalogUnreachable
from analytics.model import open_model
from analytics.pricefill import PriceFill
from analytics.reader import prepare
from analytics.reconcile import reconcile
from analytics.report import hygiene_report
from analytics.rollup import Rollup, RollupResult
from schema import roles
from schema.private_files import private_dir
from twilio_api.client import UNREACHABLE

log = logging.getLogger("smsledger.analytics.worker")

LEADER_LOCK_ID = 0x736D736C726F6C6C  # "smslroll"


@dataclasses.dataclass
class WorkerConfig:
    database_url: str
    data_dir: Path
    rules: HygieneRules
    interval_s: float = 5.0
    batch_size: int = 250_000
    hygiene_every_s: float = 3600.0      # 0: never
    lookup_limit: int = 0                # per run; 0: off
    notify_url: str = ""
    reconcile_every_s: float = 0.0       # 0: never
    reconcile_after_s: float = 600.0
    price_fill_every_s: float = 0.0      # 0: never
    price_fill_after_s: float = 86400.0
    price_fill_limit: int = 500
    once: bool = False
    crash_after_batches: int = 0
    alerts: AlertsConfig | None = None   # None: no alert rules evaluated
    compact_every_s: float = 600.0       # 0: never
    lake_keep_s: float = 3600.0
    compact_now: bool = False            # compact after the first round (rollup --compact)
    crash_in_compaction: bool = False


async def acquire_leadership(pg: asyncpg.Connection, stop: asyncio.Event) -> bool:
    """Wait for the leader lock; False if told to stop first."""
    announced = False
    while not stop.is_set():
        if await pg.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_ID):
            return True
        if not announced:
            log.info("another worker is the leader; waiting")
            announced = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return False


async def run_worker(config: WorkerConfig, twilio_client: Any = None,
                     stop: asyncio.Event | None = None) -> RollupResult:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread: skip
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    total = RollupResult()
    try:
        while True:
            try:
                if not await _session(config, twilio_client, stop, total):
                    return total
                continue   # the model was rebuilt: go on with the new one
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                    asyncpg.InterfaceError, CatalogUnreachable) as exc:
                if config.once:
                    raise
                log.warning("the event store or the analytics catalog is unreachable (%s); "
                            "retrying in %.0f s", lakes.redact(str(exc), config.database_url)
                            .splitlines()[0] if str(exc) else type(exc).__name__,
                            config.interval_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), config.interval_s)
                if stop.is_set():
                    return total
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def _session(config: WorkerConfig, twilio_client: Any, stop: asyncio.Event,
                   total: RollupResult) -> bool:
    """One connection's worth of work: lead, then roll up round after round. True when
    `rollup --rebuild` switched readers to a new lake (the caller starts over on it)."""
    pg = await roles.connect_as(config.database_url, roles.WORKER_ROLE)
    try:
        await prepare(pg)
        if not await acquire_leadership(pg, stop):
            return False
        private_dir(config.data_dir)
        lake = lakes.writer_lake(config.data_dir, config.database_url)
        duck = await asyncio.to_thread(open_model, lake)
        if not lakes.pointer_path(config.data_dir).exists():
            lakes.write_pointer(config.data_dir, lake)   # readers may open it from now on
        alerting = Alerting(config.alerts) if config.alerts is not None else None
        try:
            if alerting is not None:
                await alerting.start()
            rollup = Rollup(duck, config.rules, batch_size=config.batch_size,
                            crash_after_batches=config.crash_after_batches)
            asked: set[str] = set()
            last_report = -float("inf")   # the first report follows the first rollup
            last_reconcile = time.monotonic()
            last_compact = time.monotonic()
            prices = PriceFill(after=timedelta(seconds=config.price_fill_after_s),
                               limit=config.price_fill_limit)
            last_price_fill = -float("inf")
            while True:
                if lakes.read_pointer(config.data_dir, config.database_url).schema \
                        != lake.schema:
                    log.info("the model was rebuilt; continuing on the new one")
                    return True
                result = await rollup.run(pg, stop)
                total.events += result.events
                total.batches += result.batches
                if result.events:
                    log.info("applied %d events in %.2f s", result.events, result.seconds)
                if alerting is not None and not stop.is_set():
                    await alerting.after_rollup(duck, pg)
                if config.lookup_limit and twilio_client is not None and not stop.is_set():
                    phones = enrich.numbers_to_look_up(duck, config.lookup_limit, asked)
                    if phones:
                        stored = await enrich.look_up(twilio_client, pg, phones, asked)
                        log.info("looked up %d numbers", stored)
                if (config.reconcile_every_s and twilio_client is not None and not stop.is_set()
                        and time.monotonic() - last_reconcile >= config.reconcile_every_s):
                    last_reconcile = time.monotonic()
                    try:
                        found = await reconcile(twilio_client, pg, after=timedelta(
                            seconds=config.reconcile_after_s))
                        log.info("reconcile: %s", found)
                    except (*UNREACHABLE, TwilioException) as exc:
                        # Refused (e.g. wrong credentials) or unreachable: try next round.
                        log.warning("reconcile skipped: Twilio unreachable or refused (%s)",
                                    type(exc).__name__)
                if (config.price_fill_every_s and config.price_fill_limit and
                        twilio_client is not None and not stop.is_set() and
                        time.monotonic() - last_price_fill >= config.price_fill_every_s):
                    last_price_fill = time.monotonic()
                    try:
                        filled = await prices.run(twilio_client, pg)
                        if filled.checked:
                            log.info("price fill: %s", filled)
                    except (*UNREACHABLE, TwilioException) as exc:
                        log.warning("price fill skipped: Twilio unreachable or refused (%s)",
                                    type(exc).__name__)
                due = (config.hygiene_every_s and
                       time.monotonic() - last_report >= config.hygiene_every_s)
                if due and not stop.is_set():
                    last_report = time.monotonic()
                    try:
                        await hygiene_report(duck, pg, config.rules,
                                             config.data_dir / "reports", config.notify_url)
                    except (OSError, RuntimeError) as exc:
                        log.error("hygiene report failed: %s", exc)
                if not stop.is_set() and (config.compact_now or config.crash_in_compaction or (
                        config.compact_every_s
                        and time.monotonic() - last_compact >= config.compact_every_s)):
                    config.compact_now = False
                    last_compact = time.monotonic()
                    done = await asyncio.to_thread(
                        compact, duck, timedelta(seconds=config.lake_keep_s),
                        config.crash_in_compaction)
                    log.info("compacted the lake: %s", done)
                if config.once or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), config.interval_s)
        finally:
            if alerting is not None:
                await alerting.close()
            duck.close()
    finally:
        await pg.close()   # closing the session releases the leader lock
    return False
