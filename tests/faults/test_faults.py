"""Faults under signed load, bounded in count and time, on loopback only: every request that
got a 2xx must be in the store exactly once afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import asyncpg

from schema.migrate import migrate_url
from smsledger import devdb
from smsledger.devdb import free_port
from tests.conftest import PUBLIC_URL, TEST_TOKEN, sign, status_form

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def ingester(db_url: str, data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, DATABASE_URL=db_url, TWILIO_AUTH_TOKEN=TEST_TOKEN,
               SMSLEDGER_PUBLIC_URL=PUBLIC_URL, SMSLEDGER_DATA_DIR=str(data_dir),
               SMSLEDGER_DB_TIMEOUT_S="1", SMSLEDGER_LOG_LEVEL="WARNING")
    log = (data_dir / f"ingester-{port}.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "smsledger.cli", "serve", "--port",
                             str(port)], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
        log.close()


async def wait_ready(port: int, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the ingester did not start")


async def load(port: int, sids: list[str], acked: set[str], concurrency: int = 32) -> None:
    """Signed status callbacks for ``sids``; the sids answered 2xx go into ``acked``."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sid in sids:
        queue.put_nowait(sid)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            sid = queue.get_nowait()
            form = status_form(sid, "delivered")
            headers = {"X-Twilio-Signature": sign("/twilio/status", form)}
            try:
                async with session.post(f"http://127.0.0.1:{port}/twilio/status", data=form,
                                        headers=headers) as resp:
                    if 200 <= resp.status < 300:
                        acked.add(sid)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass   # no answer: not acknowledged (like a Twilio callback that is lost)

    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


async def stored_once(db_url: str, acked: set[str]) -> tuple[int, int]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT message_sid, count(*) AS n FROM events "
                                "GROUP BY message_sid")
    finally:
        await conn.close()
    counts = {r["message_sid"]: r["n"] for r in rows}
    missing = len(acked - set(counts))
    twice = sum(1 for n in counts.values() if n != 1)
    return missing, twice


async def test_kill_9_mid_load_loses_no_acknowledged_event(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    sids = [f"SM{i:032x}" for i in range(3000)]
    acked: set[str] = set()
    with ingester(db_url, tmp_path, port) as proc:
        await wait_ready(port)
        sending = asyncio.create_task(load(port, sids[:2000], acked))
        while len(acked) < 600:  # noqa: ASYNC110 (polls a set the load fills)
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)          # mid-load, requests in flight
        await sending
        proc.wait()
    killed_at = len(acked)
    with ingester(db_url, tmp_path, port):
        await wait_ready(port)
        await load(port, sids[2000:], acked)
    assert 600 <= killed_at < 2000 and len(acked) > killed_at
    assert await stored_once(db_url, acked) == (0, 0)


async def test_postgres_stopped_mid_load_then_recovered(tmp_path: Path) -> None:
    """On a private cluster of the test's own, never the machine's shared server."""
    cluster = devdb.PrivateCluster(tmp_path / "pg")
    cluster.start()
    try:
        await devdb.ensure_database(cluster.url, "faults")
        db_url = devdb.Database(cluster.url, "private cluster").url_for("faults")
        await migrate_url(db_url)
        port = free_port()
        sids = [f"SM{i:032x}" for i in range(2400)]
        acked: set[str] = set()
        with ingester(db_url, tmp_path, port):
            await wait_ready(port)
            await load(port, sids[:800], acked)
            await asyncio.to_thread(cluster.stop, "immediate")     # PostgreSQL is gone
            down = set()
            await load(port, sids[800:1600], down)
            acked |= down
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    ready = await resp.json()
            await asyncio.to_thread(cluster.start)                 # and back
            await load(port, sids[1600:], acked)
            async with aiohttp.ClientSession() as session:
                for _ in range(300):                               # the spool drains
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        state = await resp.json()
                    if state["status"] == "ready" and state["spool_bytes"] == 0:
                        break
                    await asyncio.sleep(0.1)
        assert len(down) == 800, "every callback while PostgreSQL was down got its 2xx"
        assert ready["status"] == "degraded" and ready["spool_bytes"] > 0
        assert state["status"] == "ready" and state["spool_bytes"] == 0
        assert len(acked) == 2400
        assert await stored_once(db_url, acked) == (0, 0)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
