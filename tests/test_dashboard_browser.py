"""The dashboard in a real headless Chromium: key figures visible on Overview and Unreachable
numbers (screenshots saved under test-artifacts/), the page refreshing on its own when the
worker publishes, and answering throughout a run of publishes."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.sync_api import Page, sync_playwright

from analytics.hygiene import load_rules
from analytics.lake import Lake, read_pointer, write_pointer
from analytics.model import open_model
from analytics.reader import prepare
from analytics.rollup import Rollup
from analytics.snapshot import open_snapshot
from tests.oracle import Filter, Oracle

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("headless Chromium is required (Debian: apt-get install chromium); "
                    "scripts/test installs it when run as root")
    return found


@pytest.fixture(scope="module")
def served(snapshot_dir: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[tuple[str, Path]]:
    """`smsledger dashboard` on a model of its own, rolled up from the session's event log (the
    test writes to it)."""
    data_dir = tmp_path_factory.mktemp("browser-data")
    url = read_pointer(snapshot_dir).database_url
    # A catalog schema per fixture instance: other modules (clicks, auth) reuse this fixture
    # on the same session database.
    schema = f"browser_lake_{secrets.token_hex(3)}"
    lake = Lake(url, schema, data_dir / "lake" / schema)

    async def build() -> None:
        pg = await asyncpg.connect(url)
        try:
            await prepare(pg)
            con = open_model(lake)
            await Rollup(con, load_rules()).run(pg)
            con.close()
        finally:
            await pg.close()

    asyncio.run(build())
    write_pointer(data_dir, lake)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SMSLEDGER_DATA_DIR=str(data_dir))
    env.pop("SMSLEDGER_SHOW_NUMBERS", None)
    log = (data_dir / "dashboard.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "smsledger.cli", "dashboard", "--port",
                             str(port)], env=env, cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.close()
                pytest.fail("dashboard exited: " +
                            (data_dir / "dashboard.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dashboard did not start within 60 s")
                time.sleep(0.3)
        yield url, data_dir
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def page(served: tuple[str, Path]) -> Iterator[Page]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield tab
        browser.close()


def metric_values(page: Page) -> list[str]:
    return [t.strip() for t in page.get_by_test_id("stMetricValue").all_inner_texts()]


def sql(data_dir: Path, query: str) -> list[tuple[object, ...]]:
    con = open_snapshot(data_dir)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def shown_metrics(page: Page, wanted: tuple[str, ...] = (), timeout_s: float = 30,
                  ) -> dict[str, str]:
    """Each metric's label and value as the browser renders them, paired by position, once
    the page has drawn as many values as labels and every ``wanted`` label (a loaded machine
    draws them one by one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        labels = [t.strip() for t in page.get_by_test_id("stMetricLabel").all_inner_texts()]
        values = metric_values(page)
        if len(labels) == len(values) and set(wanted) <= set(labels):
            return dict(zip(labels, values, strict=True))
        assert time.monotonic() < deadline, (labels, values)
        page.wait_for_timeout(200)


def oracle_figures(db_url: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The overview's figures and the count of numbers per flagged verdict, by the oracle
    (SQL of its own on the event log), with the dashboard's default range."""
    today = datetime.now(UTC).date()
    f = Filter(start=datetime.combine(today - timedelta(days=30), datetime.min.time(), UTC),
               end=datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC))

    async def compute() -> tuple[dict[str, Any], dict[str, int]]:
        conn = await asyncpg.connect(db_url)
        try:
            oracle = await Oracle.open(conn)
            verdicts: dict[str, int] = {}
            for row in (await oracle.hygiene()).values():
                verdicts[row["verdict"]] = verdicts.get(row["verdict"], 0) + 1
            return await oracle.overview(f), verdicts
        finally:
            await conn.close()

    # Playwright's sync API keeps an event loop running in this thread: the oracle runs its
    # own in another.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, compute()).result()


def test_overview_and_unreachable_in_a_real_browser(page: Page, served: tuple[str, Path],
                                                    snapshot_db: str) -> None:
    url, _ = served
    overview, verdicts = oracle_figures(snapshot_db)
    page.goto(url)
    page.get_by_text("Delivery health").wait_for(timeout=30_000)
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
    shown = shown_metrics(page, ("Sends", "Failures", "Delivery rate"))
    assert shown["Sends"] == f"{overview['sends']:,}"
    assert shown["Failures"] == f"{overview['failed']:,}"
    rate = float(shown["Delivery rate"].rstrip("% "))
    assert abs(rate - 100 * overview["delivery_rate"]) <= 0.05 + 1e-9
    assert page.get_by_test_id("stException").count() == 0
    page.wait_for_timeout(1500)   # let the charts draw before the picture
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    page.goto(url + "/unreachable")
    page.get_by_text("Numbers to stop texting").wait_for(timeout=30_000)
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
    shown = shown_metrics(page, ("Unreachable", "Remove"))
    assert shown["Unreachable"] == str(verdicts["unreachable"])
    assert shown["Remove"] == str(verdicts["remove"])
    page.get_by_text("Download hygiene CSV").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-unreachable.png"), full_page=True)


def test_page_refreshes_itself_and_answers_while_snapshots_are_published(
        page: Page, served: tuple[str, Path]) -> None:
    url, data_dir = served
    page.goto(url)
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
    con = open_model(read_pointer(data_dir))
    try:
        for i in range(5):   # a run of commits while the page is open and reloaded
            con.execute("UPDATE rollup_cursor SET updated_at = ?",
                        [datetime(2030, 1, 1, 0, i, tzinfo=UTC)])
            page.reload()
            page.get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
            assert page.get_by_test_id("stException").count() == 0
        con.execute("UPDATE rollup_cursor SET updated_at = ?",
                    [datetime(2031, 6, 1, 12, 0, tzinfo=UTC)])
    finally:
        con.close()
    # No reload: the page notices the new snapshot within its refresh interval.
    page.get_by_text("2031-06-01 12:00:00").wait_for(timeout=40_000)
    assert page.get_by_test_id("stException").count() == 0
