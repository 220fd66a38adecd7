"""The analytics worker: rollup every N seconds, Lookup enrichment, the hygiene report on a
schedule, the snapshot published after every change. One leader at a time.

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

from analytics import enrich, publish
from analytics.alerting import Alerting, AlertsConfig
from analytics.hygiene import HygieneRules
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
    pg = await roles.connect_as(config.database_url, roles.WORKER_ROLE)
    try:
        await prepare(pg)
        if not await acquire_leadership(pg, stop):
            return total
        private_dir(config.data_dir)
        work = publish.work_path(config.data_dir)
        duck = await asyncio.to_thread(open_model, work)
        alerting = Alerting(config.alerts) if config.alerts is not None else None
        try:
            if alerting is not None:
                await alerting.start()
            rollup = Rollup(duck, config.rules, batch_size=config.batch_size,
                            crash_after_batches=config.crash_after_batches)
            asked: set[str] = set()
            last_report = -float("inf")   # the first report follows the first rollup
            last_reconcile = time.monotonic()
            prices = PriceFill(after=timedelta(seconds=config.price_fill_after_s),
                               limit=config.price_fill_limit)
            last_price_fill = -float("inf")
            first = True
            while True:
                result = await rollup.run(pg, stop)
                total.events += result.events
                total.batches += result.batches
                if result.events or first:
                    await asyncio.to_thread(publish.publish, duck, work,
                                            publish.snapshot_path(config.data_dir))
                    if result.events:
                        log.info("applied %d events in %.2f s", result.events, result.seconds)
                first = False
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
                if config.once or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), config.interval_s)
        finally:
            if alerting is not None:
                await alerting.close()
            duck.close()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await pg.close()   # closing the session releases the leader lock
    return total
