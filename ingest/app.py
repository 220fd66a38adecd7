"""The app factory and its one lifecycle: ``create_app(settings)``.

The pool, the group-commit flushers and every background task are created in ``cleanup_ctx`` and
stopped there, in reverse order: the flushers write what is queued before the pool closes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from ingest import consent, fraud, ops, otp, send, webhooks
from ingest.append import FLUSHERS, GroupCommitAppender, Overloaded, StoreUnavailable, Unstorable
from ingest.forms import BadRequest
from ingest.metrics import IngestMetrics
from ingest.signature import WebhookVerifier
from ingest.spool import Spool
from schema import roles
from schema.settings import Settings, SettingsError, redact_url
from twilio_api.client import make_client

log = logging.getLogger("smsledger.ingest")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, extra: dict[str, object] | None = None) -> web.Response:
    return web.json_response({"error": message, **(extra or {})}, status=status)


class Refusals:
    """Refused requests counted by reason, for one INFO line a minute: each refusal is logged at
    DEBUG only, since under attack they come by the thousand."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    def report(self) -> None:
        if self.counts:
            total = sum(self.counts.values())
            by_reason = ", ".join(f"{r} {n}" for r, n in self.counts.most_common())
            log.info("refused %d requests in the last %.0f s (%s)", total, self.EVERY_S,
                     by_reason)
            self.counts.clear()


REFUSALS = web.AppKey("refusals", Refusals)


async def _refusals_ctx(app: web.Application) -> AsyncIterator[None]:
    refusals = app[REFUSALS]

    async def every_minute() -> None:
        while True:
            await asyncio.sleep(refusals.EVERY_S)
            refusals.report()

    task = asyncio.create_task(every_minute())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        refusals.report()


def guarded(handler: Handler, metrics: IngestMetrics, refusals: Refusals) -> Handler:
    """Wrap a POST handler: refusals become clear JSON errors and are counted, and every
    acknowledgement is timed. (A wrapper, not a middleware: it costs less per request.)

    Logs name the reason and the path, never the body or headers (they may carry secrets or
    personal data)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except BadRequest as exc:
            metrics.rejects.labels(reason=exc.reason).inc()
            refusals.add(exc.reason)
            log.debug("refused %s %s: %s (%d)", request.method, request.path, exc.reason,
                      exc.status)
            refused = _error(exc.status, exc.message, exc.extra)
            if exc.close:
                # The answer goes out, then the connection is closed at once: aiohttp would
                # otherwise linger up to 10 s reading the unread rest of the body.
                await refused.prepare(request)
                await refused.write_eof()
                request.protocol.force_close()
            return refused
        except Overloaded:
            metrics.rejects.labels(reason="overloaded").inc()
            log.warning("refused %s %s: commit queue full (503)", request.method, request.path)
            return _error(503, "the ingester is overloaded; nothing was stored")
        except Unstorable as exc:
            metrics.rejects.labels(reason="unstorable").inc()
            log.warning("refused %s %s: PostgreSQL refused the content (%s)", request.method,
                        request.path, exc)
            return _error(400, "the request's content cannot be stored; nothing was stored")
        except StoreUnavailable as exc:
            metrics.rejects.labels(reason="store_unavailable").inc()
            log.warning("refused %s %s: store unavailable (%s)", request.method, request.path,
                        exc)
            return _error(503, "the event store is unavailable; nothing was acknowledged")
        metrics.ack_latency.observe(time.perf_counter() - started)
        return response

    return wrapped


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own rollback of an open
    transaction. The default reset (``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL``, advisory
    unlocks) is one more round trip and one more parsed statement for every group commit, and
    the ingester never changes session state: it runs single statements, sets nothing, listens
    to nothing and takes no advisory locks."""


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[webhooks.SETTINGS]
    # No connection at creation (min_size=0): the ingester starts, and spools, even while
    # PostgreSQL is down. The flushers keep one connection each: one more at least for the rest.
    # Every pooled connection acts as the append-and-read role from its startup packet on: it
    # cannot UPDATE, DELETE or DROP events or their triggers (schema/roles.py).
    pool = await asyncpg.create_pool(settings.database_url, min_size=0,
                                     max_size=max(settings.db_pool_size, FLUSHERS + 1),
                                     timeout=5, reset=_keep_session,
                                     server_settings=roles.server_settings(roles.INGEST_ROLE))
    assert pool is not None
    try:
        async with pool.acquire(timeout=5) as conn:
            if await conn.fetchval("SELECT to_regclass('events')") is None:
                raise SettingsError("the event store has no `events` table: run "
                                    "`smsledger migrate`")
        log.info("event store ready at %s", redact_url(settings.database_url))
    except roles.ROLE_ERRORS as exc:
        await pool.close()
        raise SettingsError(str(roles.explain(roles.INGEST_ROLE, exc))) from None
    except (OSError, TimeoutError, asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError) as exc:
        log.warning("PostgreSQL at %s is unreachable (%s): accepting events into the spool "
                    "until it answers", redact_url(settings.database_url), type(exc).__name__)
    except BaseException:
        await pool.close()
        raise
    spool = Spool(settings.data_dir / "spool")
    appender = GroupCommitAppender(pool, app[webhooks.METRICS],
                                   queue_size=settings.queue_size, batch_max=settings.batch_max,
                                   timeout_s=settings.db_timeout_s, spool=spool)
    app[ops.POOL] = pool
    app[webhooks.APPENDER] = appender
    appender.start()
    try:
        yield
    finally:
        await appender.stop()
        spool.close()
        await pool.close()


async def _twilio_ctx(app: web.Application) -> AsyncIterator[None]:
    """The twilio client for /v1 (its aiohttp session must live inside the running loop)."""
    client, http = make_client(app[webhooks.SETTINGS])
    app[send.TWILIO] = client
    try:
        yield
    finally:
        await http.close()


def create_app(settings: Settings) -> web.Application:
    settings.require("database_url", "twilio_auth_token")
    app = web.Application(client_max_size=max(settings.max_body_bytes,
                                              webhooks.API_MAX_BODY_BYTES))
    app[webhooks.SETTINGS] = settings
    app[fraud.GUARD] = fraud.FraudGuard()
    metrics = app[webhooks.METRICS] = IngestMetrics()
    app[webhooks.SIGNER] = WebhookVerifier.from_settings(settings)
    app[webhooks.SLOW_READERS] = webhooks.SlowReaders(settings.max_slow_readers,
                                                      settings.body_timeout_s)
    refusals = app[REFUSALS] = Refusals()
    app.cleanup_ctx.append(_refusals_ctx)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_twilio_ctx)
    for path, handler in (("/twilio/status", webhooks.status_callback),
                          ("/twilio/inbound", consent.inbound_message),
                          ("/twilio/events", webhooks.event_stream),
                          ("/v1/messages", send.send_message),
                          ("/v1/events/sent", send.record_sent),
                          ("/v1/verify/start", send.verify_start),
                          ("/v1/verify/check", send.verify_check),
                          ("/v1/otp/confirm", otp.confirm)):
        app.router.add_post(path, guarded(handler, metrics, refusals))
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get("/openapi.json", ops.openapi)
    return app
