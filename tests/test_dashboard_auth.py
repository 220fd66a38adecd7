"""Who may see the dashboard: the password sign-in through Streamlit's AppTest, the explorer's
masking rule, and what `smsledger dashboard` starts Streamlit with (OpenID Connect through a
real browser is in tests/test_dashboard_browser.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics.snapshot import open_snapshot
from dashboard.auth import allowed_hosts, host_allowed, host_name, user_allowed
from schema.settings import Secret, Settings, SettingsError
from smsledger import dashboard_cmd

APP = "../dashboard/app.py"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def locked(snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch, fresh_caches: None,
           ) -> AppTest:
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(snapshot_dir))
    monkeypatch.setenv("SMSLEDGER_DASHBOARD_PASSWORD", PASSWORD)
    monkeypatch.delenv("SMSLEDGER_SHOW_NUMBERS", raising=False)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_password_required_before_anything_is_shown(locked: AppTest) -> None:
    assert [m.label for m in locked.metric] == []
    assert locked.dataframe.len == 0
    assert locked.text_input(key="password").proto.type == 1   # TextInput.PASSWORD
    sign_in(locked, "wrong horse")
    assert "Wrong password" in locked.error[0].value
    assert [m.label for m in locked.metric] == []
    assert "smsledger_signed_in" not in locked.session_state


def test_right_password_opens_every_page_for_the_session(locked: AppTest,
                                                         snapshot_dir: Path) -> None:
    sign_in(locked, PASSWORD)
    shown = {m.label: m.value for m in locked.metric}
    con = open_snapshot(snapshot_dir)
    try:
        [(sends,)] = con.execute("SELECT count(*) FROM messages").fetchall()
    finally:
        con.close()
    assert shown["Sends"] == f"{sends:,}"
    assert locked.session_state["smsledger_signed_in"] is True
    # Another page, same session: no password asked again.
    locked.switch_page("views/unreachable.py").run()
    assert not locked.exception, locked.exception
    assert "Remove" in [m.label for m in locked.metric]
    assert not [t for t in locked.text_input if t.key == "password"]
    # Signing out locks it again.
    locked.sidebar.button[0].click().run()
    assert [m.label for m in locked.metric] == []


def test_password_is_kept_hashed_and_compared_in_constant_time(
        monkeypatch: pytest.MonkeyPatch, fresh_caches: None) -> None:
    import hmac

    from dashboard import auth

    monkeypatch.setenv("SMSLEDGER_DASHBOARD_PASSWORD", PASSWORD)
    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.password_matches(PASSWORD) and not auth.password_matches(PASSWORD + "x")
    salt, digest = auth._password_hash()
    assert PASSWORD.encode() not in (salt, digest) and len(digest) == 32
    assert all(PASSWORD.encode() not in pair for pair in compared) and len(compared) == 2


def _shown_text(at: AppTest) -> str:
    """Everything the page shows as text: headers, captions, warnings, table cells."""
    parts = [e.value for kind in ("header", "subheader", "caption", "markdown", "warning",
                                  "info", "error") for e in at.get(kind)]
    parts += [frame.value.to_csv() for frame in at.dataframe]
    return "\n".join(str(p) for p in parts)


def test_explorer_with_masking_shows_a_typed_number_masked(
        snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch, fresh_caches: None) -> None:
    """The rule: masking hides numbers from whoever looks at the dashboard; an operator who
    already knows a whole number may look it up (that is what the explorer is for), and sees
    its history with the number masked as everywhere else: the page never shows a whole number
    it was not given. (Strangers are kept out by the sign-in, not by the explorer.)"""
    con = open_snapshot(snapshot_dir)
    try:
        [(phone, n)] = con.execute(
            "SELECT phone, count(*) FROM events WHERE phone LIKE '+%' GROUP BY 1 "
            "ORDER BY 2 DESC, 1 LIMIT 1").fetchall()
        whole = {r[0] for r in con.execute("SELECT DISTINCT phone FROM events "
                                           "WHERE phone LIKE '+%'").fetchall()}
    finally:
        con.close()
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(snapshot_dir))
    monkeypatch.delenv("SMSLEDGER_SHOW_NUMBERS", raising=False)
    monkeypatch.delenv("SMSLEDGER_DASHBOARD_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page("views/explorer.py").run()
    at.text_input(key="explore").input(phone).run()
    assert not at.exception, at.exception
    shown = _shown_text(at)
    assert f"•••{phone[-4:]}: {n} events" in shown
    assert not [p for p in whole if p in shown]          # no whole number anywhere
    # Its last 4 digits, as the masked pages show them: a masked list to pick from.
    at.text_input(key="explore").input("•••" + phone[-4:]).run()
    assert not at.exception, at.exception
    assert not [p for p in whole if p in _shown_text(at)]
    # With whole numbers allowed, they show.
    monkeypatch.setenv("SMSLEDGER_SHOW_NUMBERS", "1")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page("views/explorer.py").run()
    at.text_input(key="explore").input(phone).run()
    assert phone in _shown_text(at)


@pytest.mark.parametrize(("header", "allowed"), [
    (None, True),                       # no browser: AppTest, scripts
    ("127.0.0.1:8501", True), ("localhost:8501", True), ("LOCALHOST", True),
    ("[::1]:8501", True), ("dash.example.com", True),
    ("rebound.attacker.example:8501", False), ("127.0.0.1.nip.io:8501", False),
    ("", False), ("localhost.attacker.example", False),
])
def test_host_names(header: str | None, allowed: bool) -> None:
    names = allowed_hosts(Settings(dashboard_url="https://dash.example.com"))
    assert host_allowed(header, names) is allowed


def test_host_name_parsing_and_users() -> None:
    assert host_name("[::1]:80") == "::1" and host_name("a.b:1") == "a.b"
    assert user_allowed("Ann@Example.com", ("ann@example.com",))
    assert user_allowed("bob@example.com", ("@example.com",))
    assert not user_allowed("bob@example.com.evil", ("@example.com",))
    assert not user_allowed(None, ("@example.com",)) and user_allowed(None, ())


def _dashboard(host: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smsledger.cli", "dashboard", "--host", host,
                           "--port", "1"], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_no_auth_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSLEDGER_")}
    env["SMSLEDGER_DATA_DIR"] = str(tmp_path)
    done = _dashboard("0.0.0.0", env)   # noqa: S104 (the address being refused)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert "SMSLEDGER_DASHBOARD_PASSWORD" in done.stderr


def test_streamlit_flags_and_the_oidc_secrets_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    argv, said = dashboard_cmd.prepare(settings, "127.0.0.1", 8600)
    assert argv[argv.index("--client.showErrorDetails") + 1] == "none"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert "no authentication configured, so listening on 127.0.0.1 only" in said
    assert "--secrets.files" not in argv
    with pytest.raises(SettingsError, match="refusing to listen on 0.0.0.0"):
        dashboard_cmd.prepare(settings, "0.0.0.0", 8600)   # noqa: S104

    oidc = Settings(data_dir=tmp_path / "data", oidc_client_id="smsledger",
                    oidc_client_secret=Secret("client-secret-do-not-print-1234"),
                    oidc_metadata_url="https://id.example/.well-known/openid-configuration")
    argv, said = dashboard_cmd.prepare(oidc, "0.0.0.0", 8600)   # noqa: S104
    secrets_file = Path(argv[argv.index("--secrets.files") + 1])
    assert secrets_file.parent == tmp_path / "data" / "dashboard"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets_file.parent.stat().st_mode) == 0o700
    text = secrets_file.read_text()
    assert 'client_secret = "client-secret-do-not-print-1234"' in text
    assert 'redirect_uri = "http://localhost:8600/oauth2callback"' in text
    assert "client-secret" not in said and "client-secret" not in " ".join(argv)
    # Half a provider is an error naming what is missing.
    with pytest.raises(SettingsError, match="SMSLEDGER_OIDC_CLIENT_SECRET"):
        dashboard_cmd.prepare(Settings(data_dir=tmp_path, oidc_client_id="x",
                                       oidc_metadata_url="https://id.example/x"), "::1", 1)
    # Back to a password: the client secret does not stay on disk.
    dashboard_cmd.prepare(Settings(data_dir=tmp_path / "data",
                                   dashboard_password=Secret("pw")), "0.0.0.0", 8600)  # noqa: S104
    assert not secrets_file.exists()
