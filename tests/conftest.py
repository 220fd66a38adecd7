"""Test fixtures on real parts: a real PostgreSQL (a throwaway database per test session, cloned
per test from a migrated template), real twilio signatures, the real aiohttp app."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from schema.migrate import migrate
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger import devdb

# A made-up token for tests; real ones come from the environment and never from code.
TEST_TOKEN = "test-auth-token-" + "0123456789abcdef"
PUBLIC_URL = "https://sms.example.test"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devdb.Database]:
    """The PostgreSQL server the tests use: DATABASE_URL, else 127.0.0.1:5432, else a private
    cluster started for this session."""
    db = devdb.find_database(tmp_path_factory.mktemp("pgdata"))
    yield db
    if db.how == "private cluster" and db.cluster_dir is not None:
        devdb.PrivateCluster(db.cluster_dir).stop()


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_server: devdb.Database) -> Iterator[str]:
    """A migrated database for this test session, used as the template of per-test copies."""
    prefix = f"smsledger_test_{os.getpid()}_{secrets.token_hex(3)}"
    name = prefix + "_tmpl"

    async def create() -> None:
        await _admin(pg_server.url, f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(pg_server.url_for(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def drop_all() -> None:
        conn = await asyncpg.connect(pg_server.url)
        try:
            names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                     prefix + "%")
            for row in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop_all())


@pytest.fixture
async def db_url(pg_server: devdb.Database, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"{template_db[:-5]}_{secrets.token_hex(4)}"
    await _admin(pg_server.url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" '
                                "STRATEGY FILE_COPY")
    yield pg_server.url_for(name)
    await _admin(pg_server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_url)
    yield conn
    await conn.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Twilio's API is a closed local port here (tests never leave 127.0.0.1): the ingester
    # finds Twilio unreachable. Tests that need Twilio to answer use ``sim_ingest``.
    return Settings(database_url=db_url, twilio_account_sid="AC" + "0" * 32,
                    twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number="+15005550006",
                    twilio_api_url=f"http://127.0.0.1:{devdb.free_port()}",
                    public_url=PUBLIC_URL, data_dir=tmp_path / "data")


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[TestClient[object, object]]:
    """The real ingester app, on a real socket, with a real pool to the test database."""
    from ingest.app import create_app

    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.fixture
async def sim_ingest(settings: Settings,
                     ) -> AsyncIterator[tuple[TwilioSim, TestClient[object, object]]]:
    """The simulator standing in for Twilio (its API and its signed webhooks), and the real
    ingester set up to call it, as in the demo."""
    from ingest.app import create_app

    sim = TwilioSim(SimConfig(account_sid=settings.twilio_account_sid, auth_token=TEST_TOKEN,
                              seed=5, numbers=50, time_scale=0.01))
    async with TestServer(create_sim_app(sim)) as sim_server:
        with_sim = dataclasses.replace(
            settings, twilio_api_url=str(sim_server.make_url("")).rstrip("/"))
        async with TestClient(TestServer(create_app(with_sim))) as client:
            yield sim, client


def sign(path: str, params: Mapping[str, str], *, token: str = TEST_TOKEN,
         base: str = PUBLIC_URL) -> str:
    """X-Twilio-Signature as Twilio makes it, by the twilio library itself."""
    return str(RequestValidator(token).compute_signature(base + path, dict(params)))


async def post_signed(client: TestClient[object, object], path: str, params: dict[str, str],
                      **sign_kwargs: str) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": sign(path, params, **sign_kwargs)}
    async with client.post(path, data=params, headers=headers) as resp:
        return resp.status, await resp.text()


def status_form(sid: str, status: str, error_code: str = "", **extra: str) -> dict[str, str]:
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            "AccountSid": "AC" + "0" * 32, "From": "+15005550006", "To": "+14155550123",
            "ApiVersion": "2010-04-01", **extra}
    if error_code:
        form["ErrorCode"] = error_code
    return form


@pytest.fixture(scope="session")
def fresh_database(pg_server: devdb.Database, template_db: str) -> Iterator[Any]:
    """A factory of migrated databases for session-scoped fixtures (dropped at the end)."""
    made: list[str] = []

    def make() -> str:
        name = f"{template_db[:-5]}_s{secrets.token_hex(4)}"
        asyncio.run(_admin(pg_server.url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" '
                                          "STRATEGY FILE_COPY"))
        made.append(name)
        return pg_server.url_for(name)

    yield make


@pytest.fixture(scope="session")
def snapshot_db(fresh_database: Any) -> str:
    """The event store behind ``snapshot_dir`` (what the oracle reads)."""
    return str(fresh_database())


@pytest.fixture(scope="session")
def snapshot_dir(snapshot_db: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose published snapshot the real rollup built from simulated traffic."""
    from tests import snapshot_data

    data_dir = tmp_path_factory.mktemp("dashboard-data")
    asyncio.run(snapshot_data.build(snapshot_db, data_dir))
    return data_dir


async def roll_up_everything(db_url: str, data_dir: Path, deadline_s: float = 60,
                             batch_size: int = 250_000) -> None:
    """The real worker, once, again until its snapshot holds every event in the log.

    The rollup reads below PostgreSQL's snapshot horizon, which is cluster-wide: a transaction
    open in any database of a shared server (another test session's) holds events committed
    here back from one run. Waiting on the condition keeps the tests honest on a busy server."""
    from analytics.hygiene import load_rules
    from analytics.snapshot import SnapshotMissing, open_snapshot
    from analytics.worker import WorkerConfig, run_worker

    pg = await asyncpg.connect(db_url)
    try:
        stored = await pg.fetchval("SELECT count(*) FROM events")
    finally:
        await pg.close()
    deadline = asyncio.get_running_loop().time() + deadline_s
    while True:
        await run_worker(WorkerConfig(database_url=db_url, data_dir=data_dir,
                                      rules=load_rules(), once=True, hygiene_every_s=0,
                                      batch_size=batch_size),
                         stop=asyncio.Event())
        try:
            con = open_snapshot(data_dir)
        except SnapshotMissing:
            applied = -1
        else:
            try:
                applied = con.execute("SELECT count(*) FROM events").fetchone()[0]
            finally:
                con.close()
        if applied >= stored:
            return
        assert asyncio.get_running_loop().time() < deadline, (
            f"the rollup applied {applied} of {stored} events")
        await asyncio.sleep(0.2)


async def until(condition: Callable[[], bool], deadline_s: float = 30, what: str = "") -> None:
    """Wait until ``condition()`` holds, checking every 10 ms; fail after ``deadline_s``.
    What the tests use instead of a fixed sleep before an exact count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        assert loop.time() < deadline, f"not within {deadline_s} s: {what or condition}"
        await asyncio.sleep(0.01)
