"""Health, readiness and metrics endpoints for operators and load balancers."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from ingest.webhooks import METRICS

POOL = web.AppKey("pool", asyncpg.Pool)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when PostgreSQL answers within a second."""
    try:
        async with asyncio.timeout(1.0):
            async with request.app[POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return web.json_response({"status": "unavailable", "database": type(exc).__name__},
                                 status=503)
    return web.json_response({"status": "ready", "database": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
