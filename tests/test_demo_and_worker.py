"""`smsledger demo` end to end (every page gets data; Ctrl-C leaves no process and exits 0), and
the worker's schedules: a hygiene report every N seconds, reconciliation every N seconds, the
Lookup budget per round, and SIGTERM in the middle of a rollup finishing the batch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from analytics import queries
from analytics.hygiene import load_rules
from analytics.snapshot import CatalogUnreachable, SnapshotMissing, open_snapshot
from analytics.worker import WorkerConfig, run_worker
from schema import store
from schema.events import Source, message_sent
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger.devdb import free_port, port_open
from tests.conftest import TEST_TOKEN, roll_up_everything, until
from tests.factory import T0, append, message, settled, status
from twilio_api.client import make_client

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "AC" + "9" * 32


def descendants(pid: int) -> set[int]:
    """Every process under ``pid`` (children, their children ...), by /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie has exited: it only waits for its parent to read its status)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_base_port() -> int:
    """A port P with P+10 and P+20 free as well (the demo's simulator and dashboard)."""
    for _ in range(50):
        port = free_port()
        if port + 20 < 65536 and not any(port_open("127.0.0.1", port + d) for d in (10, 20)):
            return port
    raise AssertionError("no free port with +10 and +20 free")


def pages_without_data(data_dir: Path) -> list[str]:
    """What each dashboard page shows, read through the queries it uses (sends and the trend,
    error codes, carriers, OTP latency, Verify, flagged numbers, opt-outs, a timeline): the
    pages that have nothing yet."""
    try:
        con = open_snapshot(data_dir)
    except (SnapshotMissing, CatalogUnreachable):
        return ["no snapshot"]
    try:
        sid = con.execute("SELECT message_sid FROM messages LIMIT 1").fetchone()
        checks = {
            "overview": lambda: bool(queries.overview(con)["sends"]),
            "errors": lambda: not queries.error_breakdown(con).empty,
            "carriers": lambda: not queries.delivery_by(con, "carrier").empty,
            "otp": lambda: not queries.otp_latency(con).empty,
            "verify": lambda: not queries.verify_conversion(con).empty,
            "unreachable": lambda: not queries.flagged_numbers(con).empty,
            "opt_outs": lambda: not queries.opt_outs(con).empty,
            "explorer": lambda: sid is not None and not queries.timeline(con, sid[0]).empty,
        }
        return [page for page, has_data in checks.items() if not has_data()]
    finally:
        con.close()


def start_demo(db_url: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    port = free_base_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSLEDGER_", "TWILIO_"))}
    env.update(DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(data_dir))
    with (tmp_path / "demo.log").open("wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "smsledger.cli", "demo", "--port",
                                 str(port), "--rate", "20", "--duration", "600"],
                                env=env, cwd=ROOT, stdout=log, stderr=log)
    return demo, data_dir


def wait_for_pages(demo: subprocess.Popen[bytes], data_dir: Path, log: Path,
                   ignore: tuple[str, ...] = (), within_s: float = 120) -> set[int]:
    """Until every page (but ``ignore``) has data: the README promises within a minute.
    Returns the demo's processes seen meanwhile."""
    children: set[int] = set()
    deadline = time.monotonic() + within_s
    while empty := [p for p in pages_without_data(data_dir) if p not in ignore]:
        assert demo.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, (
            f"pages still empty after {within_s:.0f} s: {empty} " + log.read_text()[-3000:])
        children |= descendants(demo.pid)
        time.sleep(0.5)
    return children | descendants(demo.pid)


def stop_demo(demo: subprocess.Popen[bytes]) -> None:
    if demo.poll() is None:
        demo.kill()
        demo.wait()


@pytest.mark.timeout(420)
def test_demo_fills_the_pages_and_ctrl_c_leaves_no_process(db_url: str,
                                                           tmp_path: Path) -> None:
    demo, data_dir = start_demo(db_url, tmp_path)
    log = tmp_path / "demo.log"
    try:
        # the Unreachable page: see the xfail test below
        children = wait_for_pages(demo, data_dir, log, ignore=("unreachable",))
        # ingester, simulator, worker, dashboard at least
        assert len(children) >= 4, children
        demo.send_signal(signal.SIGINT)            # what Ctrl-C sends
        assert demo.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        stop_demo(demo)
    left = {pid for pid in children if alive(pid)}
    assert not left, f"processes left after Ctrl-C: {left}"
    text = log.read_text()
    assert "stopped" in text and "Traceback" not in text
    assert TEST_TOKEN not in text


@pytest.mark.timeout(420)
def test_demo_fills_the_unreachable_page(db_url: str, tmp_path: Path) -> None:
    demo, data_dir = start_demo(db_url, tmp_path)
    try:
        wait_for_pages(demo, data_dir, tmp_path / "demo.log")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=90)
        finally:
            stop_demo(demo)


# -- the worker's schedules ------------------------------------------------------------------

async def plant_numbers(db: asyncpg.Connection, count: int) -> list[str]:
    phones = [f"+1415555{n:04d}" for n in range(count)]
    evs = []
    for n, phone in enumerate(phones):
        evs += message(n, phone, T0 + timedelta(minutes=n))
    await append(db, evs)
    return phones


@pytest.fixture
async def twilio(tmp_path: Path) -> AsyncIterator[tuple[TwilioSim, object]]:
    sim = TwilioSim(SimConfig(account_sid=ACCOUNT, auth_token=TEST_TOKEN, seed=2, numbers=20,
                              time_scale=0.01))
    async with TestServer(create_sim_app(sim)) as server:
        client, http = make_client(Settings(
            twilio_account_sid=ACCOUNT, twilio_auth_token=Secret(TEST_TOKEN),
            twilio_api_url=str(server.make_url("")).rstrip("/")))
        try:
            yield sim, client
        finally:
            await http.close()


async def test_hygiene_report_every_n_seconds(db_url: str, db: asyncpg.Connection,
                                              tmp_path: Path) -> None:
    await plant_numbers(db, 3)
    await append(db, message(90, "+14155559999", T0, "undelivered", 30005))
    stop = asyncio.Event()
    config = WorkerConfig(database_url=db_url, data_dir=tmp_path, rules=load_rules(),
                          interval_s=0.1, hygiene_every_s=1.0)
    reports = tmp_path / "reports"
    started = time.monotonic()
    worker = asyncio.create_task(run_worker(config, stop=stop))
    try:
        await until(lambda: len(list(reports.glob("hygiene-2*.csv"))) >= 3, 60,
                    "three hygiene reports")
    finally:
        stop.set()
        await worker
    elapsed = time.monotonic() - started
    made = sorted(reports.glob("hygiene-2*.csv"))   # not hygiene-latest.csv
    # The first follows the first rollup, then one per second: never more often.
    assert len(made) <= elapsed / 1.0 + 1, (len(made), elapsed)
    for csv_path in made:
        assert "+14155559999" in csv_path.read_text()


async def test_reconcile_every_n_seconds(db_url: str, db: asyncpg.Connection, tmp_path: Path,
                                         twilio: tuple[TwilioSim, object]) -> None:
    """Each send the callbacks never reached is fetched by the next reconciliation; a send
    made after the first one is found by a later one: the schedule repeats."""
    sim, client = twilio
    good = sim.numbers_with("good")

    async def lost_send(n: int) -> str:
        code, created = sim.create_message({"To": good[n].e164, "From": "+15005550006",
                                            "Body": "hi"}, [])   # no callback URL: all lost
        assert code == 201
        async with db.transaction():
            await store.append(db, [message_sent(
                sid=created["sid"], to=good[n].e164, from_="+15005550006",
                messaging_service_sid=None, category="otp", tags=[], segments=1,
                media_count=0, status="queued",
                requested_at=datetime.now(UTC) - timedelta(minutes=30), source=Source.API)])
        return str(created["sid"])

    async def reconciled() -> set[str]:
        rows = await db.fetch("SELECT DISTINCT message_sid FROM events "
                              "WHERE source = 'reconcile' AND type = 'message.status'")
        return {r["message_sid"] for r in rows}

    first = await lost_send(0)
    await sim.drain()
    stop = asyncio.Event()
    config = WorkerConfig(database_url=db_url, data_dir=tmp_path, rules=load_rules(),
                          interval_s=0.1, hygiene_every_s=0, reconcile_every_s=0.5,
                          reconcile_after_s=60)
    worker = asyncio.create_task(run_worker(config, client, stop=stop))
    try:
        found: set[str] = set()

        async def poll() -> None:
            found.clear()
            found.update(await reconciled())

        deadline = asyncio.get_running_loop().time() + 60
        while first not in found:
            assert asyncio.get_running_loop().time() < deadline, "first send not reconciled"
            await poll()
            await asyncio.sleep(0.05)
        second = await lost_send(1)
        await sim.drain()
        while second not in found:
            assert asyncio.get_running_loop().time() < deadline, "second send not reconciled"
            await poll()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await worker


async def test_lookup_budget_per_round(db_url: str, db: asyncpg.Connection, tmp_path: Path,
                                       twilio: tuple[TwilioSim, object]) -> None:
    _, client = twilio
    phones = await plant_numbers(db, 5)
    await roll_up_everything(db_url, tmp_path)          # the model knows the five numbers
    config = WorkerConfig(database_url=db_url, data_dir=tmp_path, rules=load_rules(),
                          once=True, hygiene_every_s=0, lookup_limit=2)
    looked: list[int] = []
    for _ in range(4):
        await settled(db)    # last round's answers below the reader's horizon: rolled up now
        await run_worker(config, client, stop=asyncio.Event())
        looked.append(await db.fetchval(
            "SELECT count(*) FROM events WHERE type = 'number.looked_up'"))
    assert looked == [2, 4, 5, 5]        # two a round, each number once, then none
    rows = await db.fetch("SELECT phone FROM events WHERE type = 'number.looked_up'")
    assert sorted(r["phone"] for r in rows) == sorted(phones)


async def test_a_number_lookup_refuses_is_kept_and_not_asked_again(
        db_url: str, db: asyncpg.Connection, tmp_path: Path,
        twilio: tuple[TwilioSim, object]) -> None:
    """A Lookup that Twilio answers with a 4xx (no such number) is its final word: kept as the
    number's answer, so the number does not come first in line again every run and starve the
    budget."""
    _, client = twilio
    bad = "+0123456789"               # no country calling code 0: Lookup answers 404
    await append(db, message(1, bad, T0) + message(2, "+14155550100", T0))
    await roll_up_everything(db_url, tmp_path)
    config = WorkerConfig(database_url=db_url, data_dir=tmp_path, rules=load_rules(),
                          once=True, hygiene_every_s=0, lookup_limit=1)
    for _ in range(3):
        await settled(db)
        await run_worker(config, client, stop=asyncio.Event())
    rows = await db.fetch("SELECT phone, error_code FROM events "
                          "WHERE type = 'number.looked_up' ORDER BY phone")
    # One a round: the refused number first (it sorts first), then the good one; the third
    # round has nobody left to ask.
    assert [(r["phone"], r["error_code"]) for r in rows] == [(bad, 20404),
                                                            ("+14155550100", None)]


async def test_sigterm_mid_rollup_finishes_the_batch(db_url: str, db: asyncpg.Connection,
                                                     tmp_path: Path) -> None:
    """SIGTERM while the worker is applying a long backlog in batches of 100: it commits the
    batch it is in, publishes, and exits 0; the snapshot holds whole batches, in log order."""
    total, batch = 20_000, 100
    evs = [status(f"SM{n:032x}", "+14155550100", "sent", T0 + timedelta(seconds=n))
           for n in range(total)]
    await append(db, evs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSLEDGER_", "TWILIO_"))}
    env.update(DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(tmp_path),
               SMSLEDGER_HYGIENE_EVERY_S="0", SMSLEDGER_LOOKUP_LIMIT="0")
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsledger.cli", "worker", "--batch-size", str(batch), env=env,
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The leader lock taken: the next thing the worker does is the rollup, and it checks
        # for a stop only between batches.
        deadline = asyncio.get_running_loop().time() + 60
        while not await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                    "AND database = (SELECT oid FROM pg_database WHERE "
                                    "datname = current_database()) AND granted"):
            assert worker.returncode is None
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        worker.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(worker.communicate(), 120)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == 0, out.decode()[-3000:]
    con = open_snapshot(tmp_path)
    try:
        applied = con.execute("SELECT events FROM rollup_cursor").fetchone()
        assert applied is not None
        [n] = applied
        positions = [r[0] for r in con.execute("SELECT position FROM events ORDER BY position")
                     .fetchall()]
    finally:
        con.close()
    assert 0 < n < total, n                 # stopped early, after at least one batch
    assert n % batch == 0, n                # whole batches only
    first = [r["position"] for r in await db.fetch(
        "SELECT position FROM events ORDER BY tx_id, position LIMIT $1", n)]
    assert positions == sorted(first)       # exactly the log's first n events
