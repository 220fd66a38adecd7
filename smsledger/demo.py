"""``smsledger demo``: the whole thing on one machine, with the Twilio simulator.

It finds or starts PostgreSQL, migrates, then runs each part as a child process it owns (by
PID): the ingester, the simulator driving traffic through it, the analytics worker and the
dashboard.
Ctrl-C (or ``--duration``) stops every child it started, then the private cluster if it
started one. Nothing else is touched.

It is quiet: the URLs, then one summary line every ``SUMMARY_EVERY_S``. The children log at
WARNING unless SMSLEDGER_LOG_LEVEL is set (INFO or DEBUG show every refused send and rollup).
Each child runs in a process group of its own, so the terminal's Ctrl-C reaches the demo alone
and the demo stops the children in order — the traffic first, the ingester last — instead of
all of them at once, each printing the others' disappearance.
"""

from __future__ import annotations

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
from schema.private_files import private_dir
from schema.settings import Settings, redact_url
from smsledger import devdb

log = logging.getLogger("smsledger.demo")

DEMO_ACCOUNT_SID = "AC" + "de300" * 6 + "00"
SUMMARY_EVERY_S = 20.0
# The order children are stopped in: what makes traffic first, what stores it last.
STOP_ORDER = ("simulator", "worker", "dashboard", "ingester")
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _own_group_dying_with_parent() -> None:
    """In the child, before exec: a process group of its own (the terminal's Ctrl-C is the
    demo's to handle), and SIGTERM should the demo die without stopping it (kill -9)."""
    os.setpgrp()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):   # not Linux: the demo's own stop still applies
        pass


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
    """SIGTERM each child in STOP_ORDER and wait for it (15 s at most, then SIGKILL)."""
    rank = {name: i for i, name in enumerate(STOP_ORDER)}
    for child in sorted(children, key=lambda c: rank.get(c.name, len(rank))):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop; killing it", child.name, child.process.pid)
            child.process.kill()
            child.process.wait()


@dataclass
class Progress:
    """The previous summary line's figures, for the rate."""
    at: float
    stored: int = 0


async def _pg_figures(url: str) -> tuple[int, int]:
    """(events stored, alerts open) from the event log. A count, not the last position: a
    duplicate's ``ON CONFLICT DO NOTHING`` still takes a position, so positions run ahead."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events")
        alerts = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE type = 'alert.opened') "
            "- count(*) FILTER (WHERE type = 'alert.resolved') FROM events "
            "WHERE type IN ('alert.opened', 'alert.resolved')")
        return int(stored), max(0, int(alerts or 0))
    finally:
        await conn.close()


def _applied(data_dir: Path) -> int | None:
    """How many events the analytics model holds, as the dashboard sees it (None: not yet)."""
    from analytics.snapshot import open_snapshot

    try:
        con = open_snapshot(data_dir)
    except Exception:  # noqa: BLE001 (not published yet, or being switched: say "not yet")
        return None
    try:
        row = con.execute("SELECT events FROM rollup_cursor").fetchone()
        return int(row[0]) if row else 0
    except Exception:  # noqa: BLE001 (a model being rebuilt: the next line will tell)
        return None
    finally:
        con.close()


def summary_line(url: str, data_dir: Path, last: Progress) -> str:
    clock = datetime.now().strftime("%H:%M:%S")
    try:
        stored, alerts = asyncio.run(_pg_figures(url))
    except (OSError, TimeoutError) as exc:
        return f"{clock}  PostgreSQL did not answer ({type(exc).__name__})"
    now = time.monotonic()
    rate = (stored - last.stored) / max(now - last.at, 1e-9)
    last.at, last.stored = now, stored
    applied = _applied(data_dir)
    analytics = ("not yet" if applied is None
                 else f"{applied:,} applied ({max(0, stored - applied):,} to go)")
    return (f"{clock}  events stored {stored:,} (+{rate:.1f}/s)  analytics {analytics}  "
            f"open alerts {alerts}")


# The incident the demo plays by default, so that an alert opens and resolves while you watch:
# three minutes in, AT&T (about a tenth of the simulated traffic) stops delivering for five.
DEMO_INCIDENT = "carrier-outage:at&t@180+300"


def run_demo(settings: Settings, *, port: int, duration: float, rate: float, seed: int,
             incident: str = DEMO_INCIDENT) -> int:
    data_dir: Path = settings.data_dir
    private_dir(data_dir)
    environ = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    db = devdb.find_database(data_dir, environ)
    url = db.url
    if db.how != "environment":
        asyncio.run(devdb.ensure_database(db.url, "smsledger"))
        url = db.url_for("smsledger")
    applied = asyncio.run(migrate_url(url))
    print(f"database:  {db.how}, {redact_url(url)} ({len(applied)} migrations applied now)")

    ingest_url = f"http://127.0.0.1:{port}"
    twilio_port = port + 10
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
               SMSLEDGER_DATA_DIR=str(data_dir.resolve()),
               # The worker watches the ingester (spool in use, 403 share) for its alerts.
               SMSLEDGER_INGEST_URL=ingest_url,
               # The simulator fills prices in a minute after the final status (Twilio: up to
               # 24 h): the demo asks for them after two, every half minute.
               SMSLEDGER_PRICE_FILL_AFTER_S=os.environ.get("SMSLEDGER_PRICE_FILL_AFTER_S",
                                                           "120"),
               SMSLEDGER_PRICE_FILL_EVERY_S=os.environ.get("SMSLEDGER_PRICE_FILL_EVERY_S",
                                                           "30"),
               # Quiet children unless a log level was asked for.
               SMSLEDGER_LOG_LEVEL=settings.log_level
               if "SMSLEDGER_LOG_LEVEL" in os.environ or settings.log_level != "INFO"
               else "WARNING")
    children: list[Child] = []

    def spawn(name: str, *argv: str, quiet: bool = False) -> Child:
        # ``quiet``: the child's stdout banners (Streamlit's URL, the simulator's counts) repeat
        # what the demo prints; its warnings and errors still reach the terminal (stderr).
        child = Child(name, subprocess.Popen(
            [sys.executable, "-m", "smsledger.cli", *argv], env=env,
            stdout=subprocess.DEVNULL if quiet else None,
            preexec_fn=_own_group_dying_with_parent))  # noqa: PLW1509 (no threads yet)
        children.append(child)
        return child

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        ingester = spawn("ingester", "serve", "--port", str(port))
        _wait_http(ingest_url + "/readyz", 30, ingester)
        print(f"ingester:  {ingest_url}  (webhooks /twilio/status, /twilio/inbound; "
              f"{ingest_url}/metrics)")
        simulator = spawn("simulator", "simulate", "--ingest-url", ingest_url,
                          "--twilio-port", str(twilio_port), "--rate", str(rate),
                          "--duration", "0", "--seed", str(seed), "--history-days", "14",
                          *(("--incident", incident) if incident else ()), quiet=True)
        _wait_http(f"http://127.0.0.1:{twilio_port}/sim/stats", 30, simulator)
        since = (datetime.now(UTC) - timedelta(days=15)).strftime("%Y-%m-%d")
        backfill = subprocess.run(
            [sys.executable, "-m", "smsledger.cli", "backfill", "--since", since], env=env,
            check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = backfill.stdout.replace("\r", "\n").strip().splitlines()
        print(f"history:   {lines[-1] if lines else 'none'} (14 days, from the simulated "
              "Messages API)")
        print(f"simulator: http://127.0.0.1:{twilio_port}  (a local Twilio; {rate:g} "
              "actions/s through the ingester)"
              + (f"; incident {incident} (seconds from now)" if incident else ""))
        spawn("worker", "worker", "--interval", "3", "--hygiene-every", "60",
              "--lookup-limit", "20")
        print(f"worker:    rollup every 3 s; a hygiene report every 60 s under "
              f"{data_dir / 'reports'}")
        dashboard_port = port + 20
        dashboard = spawn("dashboard", "dashboard", "--port", str(dashboard_port), quiet=True)
        _wait_http(f"http://127.0.0.1:{dashboard_port}/_stcore/health", 60, dashboard)
        print(f"dashboard: http://127.0.0.1:{dashboard_port}  <- open this")
        print(f"press Ctrl-C to stop everything. A summary every {SUMMARY_EVERY_S:.0f} s "
              "(SMSLEDGER_LOG_LEVEL=INFO shows what each part does)", flush=True)
        started = time.monotonic()
        progress = Progress(at=started)
        with_stored = summary_line(url, data_dir, progress)   # the baseline for the rate
        log.debug("%s", with_stored)
        next_summary = started + SUMMARY_EVERY_S
        while not stopping:
            if duration and time.monotonic() - started >= duration:
                break
            for child in children:
                if child.process.poll() is not None:
                    print(f"{child.name} exited with {child.process.returncode}; stopping")
                    stopping = True
            if time.monotonic() >= next_summary:
                next_summary += SUMMARY_EVERY_S
                print(summary_line(url, data_dir, progress), flush=True)
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A second Ctrl-C while stopping must not leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("stopping ...", flush=True)
        _stop(children)
        if db.how == "private cluster" and db.cluster_dir is not None:
            devdb.PrivateCluster(db.cluster_dir).stop()
        print("stopped", flush=True)
    return 0
