"""Health, readiness and metrics endpoints for operators and load balancers."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from ingest.append import OUTAGE_ERRORS
from ingest.metrics import CONTENT_TYPE
from ingest.openapi import SPEC
from ingest.webhooks import APPENDER, METRICS

POOL = web.AppKey("pool", asyncpg.Pool)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 "ready" when PostgreSQL answers within a second; 200 "degraded" when it does not
    but the spool can take events (they are acknowledged from there); 503 when neither."""
    appender = request.app[APPENDER]
    spool = appender.spool
    body: dict[str, object] = {
        "spool_bytes": spool.pending_bytes() if spool else 0,
        "spool_events": spool.depth_events if spool else 0}
    try:
        async with asyncio.timeout(1.0):
            async with request.app[POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
    except OUTAGE_ERRORS as exc:
        body["database"] = type(exc).__name__
        if spool is not None and spool.writable():
            return web.json_response({"status": "degraded", **body})
        return web.json_response({"status": "unavailable", **body}, status=503)
    status = "degraded" if appender.degraded else "ready"
    return web.json_response({"status": status, "database": "ok", **body})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


async def metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    # Read at scrape time rather than kept up to date on every request.
    metrics.queue_depth.set(request.app[APPENDER].queued)
    return web.Response(body=metrics.render().encode(),
                        headers={"Content-Type": CONTENT_TYPE,
                                 "X-Content-Type-Options": "nosniff"})
