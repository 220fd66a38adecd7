"""``smsledger demo``: the whole thing on one machine, with the Twilio simulator.

It finds or starts PostgreSQL, migrates, then runs each part as a child process it owns (by
PID): the ingester, the simulator driving traffic through it, the analytics worker and the
dashboard.
Ctrl-C (or ``--duration``) stops every child it started, then the private cluster if it
started one. Nothing else is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import urlopen

from schema.migrate import migrate_url
from schema.settings import Settings, redact_url
from smsledger import devdb

log = logging.getLogger("smsledger.demo")

DEMO_ACCOUNT_SID = "AC" + "de300" * 6 + "00"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _wait_http(url: str, timeout_s: float, child: Child) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
        try:
            with urlopen(url, timeout=1) as resp:  # noqa: S310 (a URL we built, on loopback)
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout_s:.0f} s")


def _stop(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in reversed(children):
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop; killing it", child.name, child.process.pid)
            child.process.kill()
            child.process.wait()


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    data_dir: Path = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    environ = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    db = devdb.find_database(data_dir, environ)
    url = db.url
    if db.how != "environment":
        asyncio.run(devdb.ensure_database(db.url, "smsledger"))
        url = db.url_for("smsledger")
    applied = asyncio.run(migrate_url(url))
    print(f"database: {db.how}, {redact_url(url)} ({len(applied)} migrations applied now)")

    ingest_url = f"http://127.0.0.1:{args.port}"
    twilio_port = args.port + 10
    env = dict(os.environ,
               DATABASE_URL=url,
               TWILIO_ACCOUNT_SID=DEMO_ACCOUNT_SID,
               # The demo never talks to Twilio: a fresh token signs the simulator's callbacks.
               TWILIO_AUTH_TOKEN=secrets.token_hex(16),
               TWILIO_PHONE_NUMBER=settings.twilio_phone_number or "+15005550006",
               SMSLEDGER_PUBLIC_URL=ingest_url,
               SMSLEDGER_API_KEY=secrets.token_hex(16),
               SMSLEDGER_TWILIO_API_URL=f"http://127.0.0.1:{twilio_port}",
               TWILIO_VERIFY_SERVICE_SID="VA" + "de300" * 6 + "00",
               SMSLEDGER_DATA_DIR=str(data_dir.resolve()))
    children: list[Child] = []

    def spawn(name: str, *argv: str) -> Child:
        child = Child(name, subprocess.Popen([sys.executable, "-m", "smsledger.cli", *argv],
                                             env=env))
        children.append(child)
        return child

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        ingester = spawn("ingester", "serve", "--port", str(args.port))
        _wait_http(ingest_url + "/readyz", 30, ingester)
        print(f"ingester:  {ingest_url}  (webhooks /twilio/status, /twilio/inbound; "
              f"{ingest_url}/metrics)")
        simulator = spawn("simulator", "simulate", "--ingest-url", ingest_url,
                          "--twilio-port", str(twilio_port), "--rate", str(args.rate),
                          "--duration", "0", "--seed", str(args.seed), "--history-days", "14")
        _wait_http(f"http://127.0.0.1:{twilio_port}/sim/stats", 30, simulator)
        since = (datetime.now(UTC) - timedelta(days=15)).strftime("%Y-%m-%d")
        subprocess.run([sys.executable, "-m", "smsledger.cli", "backfill", "--since", since],
                       env=env, check=False)
        print(f"simulator: http://127.0.0.1:{twilio_port}  (a local Twilio; {args.rate:g} "
              "actions/s through the ingester; progress every 15 s)")
        spawn("worker", "worker", "--interval", "3", "--hygiene-every", "60",
              "--lookup-limit", "20")
        print(f"worker:    rollup every 3 s into {data_dir / 'lake'}; hygiene "
              f"report every 60 s under {data_dir / 'reports'}")
        dashboard_port = args.port + 20
        dashboard = spawn("dashboard", "dashboard", "--port", str(dashboard_port))
        _wait_http(f"http://127.0.0.1:{dashboard_port}/_stcore/health", 60, dashboard)
        print(f"dashboard: http://127.0.0.1:{dashboard_port}  <- open this")
        print("press Ctrl-C to stop everything")
        started = time.monotonic()
        while not stopping:
            if args.duration and time.monotonic() - started >= args.duration:
                break
            for child in children:
                if child.process.poll() is not None:
                    print(f"{child.name} exited with {child.process.returncode}; stopping")
                    stopping = True
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        print("stopping ...")
        _stop(children)
        if db.how == "private cluster" and db.cluster_dir is not None:
            devdb.PrivateCluster(db.cluster_dir).stop()
        print("stopped")
    return 0
