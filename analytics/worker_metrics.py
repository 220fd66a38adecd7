"""The worker's Prometheus gauges (``SMSLEDGER_WORKER_METRICS_PORT``): delivery rate, volume
and OTP median per carrier and per country over the last ``WINDOW_S`` of sends, and the open
alerts per rule, refreshed after every rollup and served on 127.0.0.1:PORT/metrics, so teams
with Alertmanager can write their own rules. The server lives in the worker's event loop and is
closed with it."""

from __future__ import annotations

import time

import duckdb
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from analytics.detectors import rows

WINDOW_S = 900.0


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["dimension", "name"]
        self.messages = Gauge("smsledger_messages_window",
                              "Messages sent in the last 15 minutes.", labels,
                              registry=self.registry)
        self.delivery_rate = Gauge("smsledger_delivery_rate",
                                   "Delivered / messages with a final status, last 15 minutes.",
                                   labels, registry=self.registry)
        self.otp_p50 = Gauge("smsledger_otp_p50_seconds",
                             "Median send -> delivered latency of OTP messages, last 15 minutes.",
                             labels, registry=self.registry)
        self.alerts_open = Gauge("smsledger_alerts_open", "Open alerts, by rule.", ["rule"],
                                 registry=self.registry)
        self._runner: web.AppRunner | None = None

    def update(self, duck: duckdb.DuckDBPyConnection, open_by_rule: dict[str, int],
               now: float | None = None) -> None:
        until = time.time() if now is None else now
        found = rows(duck, "gauges", since=until - WINDOW_S, until=until)
        for gauge in (self.messages, self.delivery_rate, self.otp_p50):
            gauge.clear()       # a carrier with no traffic in the window drops out
        for r in found:
            key = (r["dimension"], r["name"])
            self.messages.labels(*key).set(r["messages"])
            if r["final"]:
                self.delivery_rate.labels(*key).set(r["delivered"] / r["final"])
            if r["otp_p50_s"] is not None:
                self.otp_p50.labels(*key).set(r["otp_p50_s"])
        self.alerts_open.clear()
        for rule, count in open_by_rule.items():
            self.alerts_open.labels(rule).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, port: int, host: str = "127.0.0.1") -> int:
        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(body=self.render(),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
