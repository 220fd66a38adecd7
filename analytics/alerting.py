"""The worker's alerting: after each rollup, probe the ingester, evaluate the alert rules,
append what changed and wake the notifier. Owns its background tasks (the notifier, the
metrics server) for the worker's lifetime; ``close()`` cancels them.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
import duckdb

from analytics.alerts import AlertEngine, AlertRules, IngestStatus, read_alert_log
from analytics.ingest_probe import IngestProbe

if TYPE_CHECKING:
    from analytics.notify import Notifier
    from analytics.worker_metrics import WorkerMetrics

log = logging.getLogger("smsledger.analytics.alerting")


@dataclasses.dataclass
class AlertsConfig:
    rules: AlertRules
    database_url: str = ""
    webhook_url: str = ""                 # SMSLEDGER_ALERT_WEBHOOK_URL
    smtp_url: str = ""                    # SMSLEDGER_SMTP_URL (secret: it may hold a password)
    ingest_url: str = ""                  # SMSLEDGER_INGEST_URL: where to probe the ingester
    metrics_port: int = 0                 # SMSLEDGER_WORKER_METRICS_PORT (0: off)


class Alerting:
    def __init__(self, config: AlertsConfig) -> None:
        from analytics.detectors import shipped

        self.config = config
        self.engine = AlertEngine(config.rules, shipped())
        self._tasks: list[asyncio.Task[None]] = []
        self.notifier: Notifier | None = None
        self.metrics: WorkerMetrics | None = None
        self._probe = IngestProbe(config.ingest_url) if config.ingest_url else None

    async def start(self) -> Alerting:
        """Start the background tasks (the notifier sends what a killed worker left pending)
        and the metrics server."""
        from analytics.notify import Notifier
        from analytics.worker_metrics import WorkerMetrics

        notifier = Notifier(self.config)
        if notifier.channels:
            self.notifier = notifier
            self._tasks.append(asyncio.create_task(notifier.run(), name="alert-notifier"))
        if self.config.metrics_port:
            self.metrics = WorkerMetrics()
            port = await self.metrics.serve(self.config.metrics_port)
            log.info("worker metrics on http://127.0.0.1:%d/metrics", port)
        return self

    async def close(self) -> None:
        """Cancel the background tasks (a pending notification stays pending in the log)."""
        if self.metrics is not None:
            await self.metrics.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def probe(self) -> IngestStatus | None:
        """The ingester's state (None when SMSLEDGER_INGEST_URL is unset)."""
        return await self._probe.read() if self._probe is not None else None

    async def after_rollup(self, duck: duckdb.DuckDBPyConnection, pg: asyncpg.Connection,
                           now: datetime | None = None) -> None:
        """One evaluation. A failure is logged and the worker goes on: alerting must never
        stop the rollup."""
        try:
            ingest = await self.probe()
            changed = await self.engine.evaluate(duck, pg, now, ingest)
            if changed and self.notifier is not None:
                self.notifier.wake.set()
            if self.metrics is not None:
                state = await read_alert_log(pg)
                by_rule = collections.Counter(rule for rule, _key in state.open)
                self.metrics.update(duck, dict(by_rule))
        except (asyncpg.PostgresError, OSError, duckdb.Error) as exc:
            log.error("alert evaluation failed: %s", exc)
