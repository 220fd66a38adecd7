"""A realistic analytics snapshot for the dashboard tests: simulated traffic through the real
ingester (the real twilio client against the simulated Twilio, signed callbacks), a planted
multi-day history for the slow hygiene rules, then the real rollup and publish."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from analytics.pricefill import PriceFill
from ingest.app import create_app
from schema.settings import Secret, Settings
from sim.traffic import Traffic, TrafficConfig
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger.devdb import free_port
from tests.conftest import TEST_TOKEN, roll_up_everything
from tests.factory import append, message
from twilio_api.client import make_client

ACCOUNT = "AC" + "3" * 32
API_KEY = "dashboard-test-key-0123456789"
OUR = "+15005550006"
UNREACHABLE = "+14155559901"


async def fill_prices(sim: TwilioSim, settings: Settings) -> None:
    """Twilio's final prices, as the worker fetches them (here at once, not after 24 h): the
    simulator fills them in a moment after each message's final status."""
    deadline = asyncio.get_running_loop().time() + 15
    while any(m["price"] is None and m["status"] in ("delivered", "undelivered", "failed")
              for m in sim.messages.values()):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    client, http = make_client(settings)
    pg = await asyncpg.connect(settings.database_url)
    try:
        await PriceFill(after=timedelta(0), limit=100_000).run(client, pg)
    finally:
        await pg.close()
        await http.close()


async def build(db_url: str, data_dir: Path, count: int = 300) -> None:
    sim = TwilioSim(SimConfig(account_sid=ACCOUNT, auth_token=TEST_TOKEN, seed=9, numbers=250,
                              time_scale=0.02, verify_service_sid="VA" + "4" * 32,
                              price_delay_s=10))
    async with TestServer(create_sim_app(sim)) as sim_server:
        port = free_port()
        settings = Settings(database_url=db_url, twilio_account_sid=ACCOUNT,
                            twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number=OUR,
                            twilio_verify_service_sid="VA" + "4" * 32,
                            twilio_api_url=str(sim_server.make_url("")).rstrip("/"),
                            api_key=Secret(API_KEY), public_url=f"http://127.0.0.1:{port}",
                            data_dir=data_dir)
        async with TestClient(TestServer(create_app(settings), port=port)) as client:
            traffic = Traffic(sim, TrafficConfig(
                ingest_url=str(client.make_url("")).rstrip("/"), public_url=settings.public_url,
                api_key=API_KEY, our_number=OUR, rate=100, count=count, seed=9,
                verify=True))
            await traffic.run()
            await sim.drain()
        await fill_prices(sim, settings)
    # 30003 three times over three days, no delivery in between: "unreachable".
    start = datetime.now(UTC) - timedelta(days=4)
    db = await asyncpg.connect(db_url)
    try:
        planted = []
        for n in range(3):
            planted += message(70_000 + n, UNREACHABLE, start + timedelta(days=n),
                               "undelivered", 30003)
        await append(db, planted)
    finally:
        await db.close()
    await roll_up_everything(db_url, data_dir)
