"""Alert notifications: one per transition, across a receiver outage and across a worker
killed with SIGKILL and restarted; `smsledger alerts check` for cron. A real webhook receiver
(aiohttp on an ephemeral port), a real worker process, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from analytics.alerting import AlertsConfig
from analytics.alerts import AlertEngine, read_alert_log
from analytics.detectors import shipped
from analytics.notify import Notifier
from tests.factory import append
from tests.test_alerts import only, rolled_up, traffic


class Receiver:
    """A webhook endpoint that records every body; ``down`` answers 503."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.down = False
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        self.bodies.append(await request.json())
        return web.Response(text="ok")

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(b["id"] for b in self.bodies)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


async def wait_for(condition: Any, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.1)


def outage(now: datetime) -> list[Any]:
    healthy = traffic(0, now - timedelta(days=2), 300, spread_s=86400 * 2 - 3600)
    bad = traffic(1000, now - timedelta(minutes=9), 60, spread_s=480, outcome="undelivered",
                  code=30008)
    return healthy + bad


async def test_receiver_down_then_up_gets_each_transition_once(
        db_url: str, db: asyncpg.Connection, tmp_path: Path, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    await append(db, outage(now))
    duck = await rolled_up(db_url, db, tmp_path / "model.duckdb")
    rules = only("delivery_rate_drop")
    opened = await AlertEngine(rules, shipped()).evaluate(duck, db, now)
    duck.close()
    assert opened
    receiver.down = True
    notifier = Notifier(AlertsConfig(rules=rules, database_url=db_url, webhook_url=receiver.url))
    task = asyncio.create_task(notifier.run())
    try:
        await wait_for(lambda: asyncio.sleep(0, receiver.refused >= 2))
        assert receiver.bodies == []
        receiver.down = False

        async def all_notified() -> bool:
            return len((await read_alert_log(db)).notified) == len(opened)
        await wait_for(all_notified)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert receiver.counts() == {e.idempotency_key: 1 for e in opened}
    body = receiver.bodies[0]
    assert body["event"] == "opened" and body["rule"] == "delivery_rate_drop"
    assert set(body) >= {"segment", "observed", "baseline", "sample", "opened_at",
                         "resolved_at", "text"}
    assert body["text"].startswith("[smsledger] OPEN delivery_rate_drop")
    # Nothing is pending any more: another pass sends nothing.
    assert await Notifier(AlertsConfig(rules=rules, database_url=db_url,
                                       webhook_url=receiver.url)).send_pending(db) == 0
    assert len(receiver.bodies) == len(opened)


def worker(db_url: str, data_dir: Path, hook: str, rules: Path) -> subprocess.Popen[bytes]:
    data_dir.mkdir(exist_ok=True)
    env = {**os.environ, "DATABASE_URL": db_url, "SMSLEDGER_DATA_DIR": str(data_dir),
           "SMSLEDGER_ALERT_WEBHOOK_URL": hook, "SMSLEDGER_ALERT_RULES": str(rules),
           "SMSLEDGER_ROLLUP_INTERVAL_S": "0.3", "SMSLEDGER_HYGIENE_EVERY_S": "0",
           "SMSLEDGER_LOOKUP_LIMIT": "0", "SMSLEDGER_RECONCILE_EVERY_S": "0"}
    with (data_dir / "worker.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "smsledger.cli", "worker"], env=env,
                                stdout=out, stderr=out)


async def test_one_notification_per_transition_across_kill_9(
        db_url: str, db: asyncpg.Connection, tmp_path: Path, receiver: Receiver) -> None:
    rules_file = tmp_path / "rules.toml"
    text = (Path(__file__).parent.parent / "analytics" / "alert_rules.toml").read_text()
    # Only the delivery rule, resolving after one good window so the test needs no hour.
    text = text.replace("enabled = true", "enabled = false").replace(
        "[rules.delivery_rate_drop]\nenabled = false", "[rules.delivery_rate_drop]\nenabled = true")
    text = text.replace("resolve_after = 3", "resolve_after = 1", 1)
    rules_file.write_text(text)
    now = datetime.now(UTC)
    await append(db, outage(now))
    data_dir = tmp_path / "data"
    first = worker(db_url, data_dir, receiver.url, rules_file)
    try:
        async def opened_and_notified() -> bool:
            log = await read_alert_log(db)
            return bool(log.open) and len(log.notified) == len(log.transitions)
        await wait_for(opened_and_notified, 90)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    log = await read_alert_log(db)
    opened_ids = {t.key for t in log.transitions}
    # Healthy traffic in the last minutes: the restarted worker resolves every alert.
    await append(db, traffic(5000, datetime.now(UTC) - timedelta(minutes=9), 2000,
                             spread_s=500))
    second = worker(db_url, data_dir, receiver.url, rules_file)
    try:
        async def resolved_and_notified() -> bool:
            log = await read_alert_log(db)
            return (not log.open and len(log.transitions) == 2 * len(opened_ids)
                    and len(log.notified) == len(log.transitions))
        await wait_for(resolved_and_notified, 90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, (data_dir / "worker.log").read_text()
    log = await read_alert_log(db)
    counts = receiver.counts()
    assert set(counts) == {t.key for t in log.transitions}
    assert all(n == 1 for n in counts.values()), counts
    assert {b["event"] for b in receiver.bodies} == {"opened", "resolved"}


async def test_alerts_check_exits_3_while_open(db_url: str, db: asyncpg.Connection,
                                               tmp_path: Path) -> None:
    from tests.factory import publish

    now = datetime.now(UTC)
    await append(db, outage(now))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    duck = await rolled_up(db_url, db, publish(db_url, data_dir))
    duck.close()
    env = {**os.environ, "DATABASE_URL": db_url, "SMSLEDGER_DATA_DIR": str(data_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "smsledger.cli", "alerts", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    assert run().stdout.strip() == "no alerts"
    checked = run("check", "--format", "json")
    assert checked.returncode == 3, checked.stderr
    found = json.loads(checked.stdout)
    assert "delivery_rate_drop" in {a["rule"] for a in found}
    listed = run()
    assert listed.returncode == 0 and "delivery_rate_drop" in listed.stdout
    again = run("check")          # nothing new: the same open alerts, no second opening
    assert again.returncode == 3
    assert len((await read_alert_log(db)).transitions) == len(found)


async def test_email_through_a_real_smtp_server(db_url: str, db: asyncpg.Connection,
                                                tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message as MessageHandler

    received: list[Any] = []

    class Collect(MessageHandler):   # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message)

    with socket.socket() as probe:       # a free port (aiosmtpd's Controller wants a number)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        now = datetime.now(UTC)
        await append(db, outage(now))
        duck = await rolled_up(db_url, db, tmp_path / "model.duckdb")
        rules = only("delivery_rate_drop")
        opened = await AlertEngine(rules, shipped()).evaluate(duck, db, now)
        duck.close()
        url = f"smtp://127.0.0.1:{port}?from=alerts@example.test&to=ops@example.test"
        notifier = Notifier(AlertsConfig(rules=rules, database_url=db_url, smtp_url=url))
        assert await notifier.send_pending(db) == len(opened)
        assert await notifier.send_pending(db) == 0
    finally:
        controller.stop()
    assert len(received) == len(opened)
    subjects = sorted(m["Subject"] for m in received)
    assert all(s.startswith("[smsledger] OPEN delivery_rate_drop") for s in subjects)
    assert {m["To"] for m in received} == {"ops@example.test"}
    log = await read_alert_log(db)
    assert {channel for channel, _key in log.notified} == {"email"}
