"""The two baselines bench/ingest compares smsledger against, each one process like it.

bare:  parse the form and answer 200 (the ceiling: aiohttp itself).
naive: parse, check the signature with twilio's RequestValidator, one INSERT (its own commit)
       per request into the same events table (the common pattern).
"""

from __future__ import annotations

import argparse
import os

import asyncpg
from aiohttp import web
from twilio.request_validator import RequestValidator

from schema import store
from schema.sources.webhooks import status_callback


async def bare(request: web.Request) -> web.Response:
    await request.post()
    return web.Response(status=200)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "naive"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    if args.mode == "bare":
        app.router.add_post("/twilio/status", bare)
    else:
        validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
        public = os.environ["SMSLEDGER_PUBLIC_URL"]
        pool_key = web.AppKey("pool", asyncpg.Pool)

        async def pool_ctx(app: web.Application):  # type: ignore[no-untyped-def]
            app[pool_key] = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=8,
                                                      max_size=8)
            yield
            await app[pool_key].close()

        async def naive(request: web.Request) -> web.Response:
            form = dict(await request.post())
            if not validator.validate(public + request.path_qs, form,
                                      request.headers.get("X-Twilio-Signature", "")):
                return web.Response(status=403)
            event = status_callback(form)  # type: ignore[arg-type]
            async with app[pool_key].acquire() as conn:
                await store.append(conn, [event])
            return web.Response(status=200)

        app.cleanup_ctx.append(pool_ctx)
        app.router.add_post("/twilio/status", naive)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
