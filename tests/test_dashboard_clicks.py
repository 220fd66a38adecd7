"""An operator's path in a real headless Chromium: from Unreachable numbers, a click on a row
opens the Message explorer on that number's timeline; and no request leaves this machine
(no font, icon or telemetry from the internet)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, sync_playwright

from tests.test_dashboard_browser import ARTIFACTS, CHROMIUM_FLAGS, chromium, served, sql  # noqa: F401 (served is a fixture)

LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def watched(served: tuple[str, Path]) -> Iterator[tuple[Page, list[str]]]:
    """A tab, and every URL it requested that was not on this machine."""
    ARTIFACTS.mkdir(exist_ok=True)
    outside: list[str] = []

    def record(request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL:
            outside.append(request.url)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.on("request", record)
        yield tab, outside
        browser.close()


def test_click_a_flagged_number_opens_its_timeline(watched: tuple[Page, list[str]],
                                                   served: tuple[str, Path]) -> None:
    page, outside = watched
    url, data_dir = served
    # The table lists removals first, newest failure first (flagged_numbers' order).
    [(first, events)] = sql(data_dir, """
        WITH f AS (SELECT phone FROM numbers WHERE verdict <> 'ok'
                   ORDER BY CASE verdict WHEN 'remove' THEN 0 WHEN 'unreachable' THEN 1
                            WHEN 'blocked' THEN 2 ELSE 3 END,
                            last_failure_at DESC NULLS LAST, phone LIMIT 1)
        SELECT f.phone, (SELECT count(*) FROM events e WHERE e.phone = f.phone) FROM f""")
    page.goto(url + "/unreachable")
    page.get_by_text("Numbers to stop texting").wait_for(timeout=30_000)
    grid = page.get_by_test_id("stDataFrame").first
    grid.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    box = grid.bounding_box()
    assert box is not None
    # The row-selection column is the grid's first, left of the data; row 1 below the header.
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)
    heading = f"•••{str(first)[-4:]}: {events} events"
    page.get_by_text(heading).wait_for(timeout=30_000)
    assert "/explorer" in page.url
    # Masking holds through the click: the search box shows the mask, not the number.
    assert page.get_by_role("textbox").first.input_value() == f"•••{str(first)[-4:]}"
    assert str(first) not in page.content()
    assert page.get_by_test_id("stException").count() == 0
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-explorer-from-unreachable.png"),
                    full_page=True)


def test_no_request_leaves_the_machine(watched: tuple[Page, list[str]],
                                       served: tuple[str, Path]) -> None:
    page, outside = watched
    url, _ = served
    for view in ("", "/errors", "/carriers", "/otp", "/opt_outs", "/explorer"):
        page.goto(url + view)
        page.get_by_test_id("stSidebar").wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
    assert outside == [], "\n".join(sorted(set(outside)))
