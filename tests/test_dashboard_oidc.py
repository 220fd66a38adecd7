"""The dashboard behind OpenID Connect, in a real headless Chromium against a real local
provider (oidc-provider-mock): nothing before signing in, the sign-in through the provider's
own form, the allowed-users list; and a DNS-rebinding page (another host name mapped to this
machine) refused."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests import test_dashboard_browser as browser_test

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SECRET = "oidc-client-secret-" + "9" * 16


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenID provider, a process of its own on 127.0.0.1 (any client ID and secret;
    the user types a subject, which becomes the e-mail claim too)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("oidc-provider") / "provider.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1",
                             "--port", str(port), "--require-nonce", "true"],
                            stdout=log, stderr=log)
    try:
        wait_listening(port, proc, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited: " + log_path.read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{proc.args!r} did not listen within 60 s")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def dashboard(provider: str, snapshot_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("oidc-data")
    shutil.copyfile(snapshot_dir / "analytics.lake", data_dir / "analytics.lake")
    port = free_port()
    url = f"http://localhost:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLEDGER_")}
    env.update(SMSLEDGER_DATA_DIR=str(data_dir),
               SMSLEDGER_OIDC_METADATA_URL=provider + "/.well-known/openid-configuration",
               SMSLEDGER_OIDC_CLIENT_ID="smsledger-dashboard",
               SMSLEDGER_OIDC_CLIENT_SECRET=CLIENT_SECRET,
               SMSLEDGER_DASHBOARD_URL=url,
               SMSLEDGER_DASHBOARD_USERS="alice@example.com,@ops.example.com")
    log_path = data_dir / "dashboard.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "smsledger.cli", "dashboard", "--port",
                             str(port)], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_listening(port, proc, log_path)
        yield url, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        found = p.chromium.launch(
            executable_path=browser_test.chromium(),
            # A name that resolves to this machine, as a DNS-rebinding attacker's would.
            args=[*browser_test.CHROMIUM_FLAGS,
                  "--host-resolver-rules=MAP rebound.attacker.test 127.0.0.1"])
        yield found
        found.close()


def sign_in(chromium: Browser, url: str, who: str) -> tuple[BrowserContext, Page]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
    assert page.get_by_test_id("stMetricValue").count() == 0     # nothing before signing in
    page.get_by_role("button", name="Sign in").click()
    # The provider's own authorization form.
    page.locator("input[name=sub]").wait_for(timeout=30_000)
    page.locator("input[name=sub]").fill(who)
    page.get_by_role("button", name="Authorize").click()
    return context, page


def test_sign_in_through_a_real_provider(chromium: Browser,
                                         dashboard: tuple[str, Path]) -> None:
    url, log_path = dashboard
    context, page = sign_in(chromium, url, "alice@example.com")
    try:
        page.get_by_text("Delivery health").wait_for(timeout=30_000)
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=30_000)
        page.get_by_text("Signed in as alice@example.com").wait_for(timeout=10_000)
        assert page.get_by_test_id("stException").count() == 0
    finally:
        context.close()
    assert CLIENT_SECRET not in log_path.read_text(errors="replace")


def test_an_account_not_listed_sees_nothing(chromium: Browser,
                                            dashboard: tuple[str, Path]) -> None:
    url, _ = dashboard
    context, page = sign_in(chromium, url, "mallory@elsewhere.example")
    try:
        page.get_by_text("may not see this dashboard").wait_for(timeout=30_000)
        assert page.get_by_test_id("stMetricValue").count() == 0
    finally:
        context.close()


def test_another_host_name_is_refused(chromium: Browser, dashboard: tuple[str, Path]) -> None:
    url, _ = dashboard
    port = url.rsplit(":", 1)[1]
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://rebound.attacker.test:{port}/")
        page.get_by_text("does not answer under this host name").wait_for(timeout=30_000)
        assert page.get_by_role("button", name="Sign in").count() == 0
        assert page.get_by_test_id("stMetricValue").count() == 0
    finally:
        context.close()
