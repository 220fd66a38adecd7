"""Who may see the dashboard: ``gate()``, called once at the top of ``app.py``.

1. The Host header must be one of the dashboard's names (``SMSLEDGER_DASHBOARD_HOSTS`` and the
   host of ``SMSLEDGER_DASHBOARD_URL``): a page on another site whose name was re-bound to
   this machine's address (DNS rebinding) gets nothing. A run with no Host header at all comes
   from no browser (AppTest, a script) and is let through to the next check.
2. With an OpenID Connect provider configured: Streamlit's ``st.login`` (its ``[auth]``
   secrets are written by ``smsledger dashboard``), then ``SMSLEDGER_DASHBOARD_USERS``.
3. Else with ``SMSLEDGER_DASHBOARD_PASSWORD``: a password form. The password is kept as a
   salted scrypt hash made at start and compared with ``hmac.compare_digest``; a signed-in
   session is remembered in ``st.session_state`` (a reload is a new session: sign in again).
4. Else nothing to check: ``smsledger dashboard`` then listens on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import urlsplit

import streamlit as st

from dashboard.common import settings
from schema.settings import Settings

SIGNED_IN = "smsledger_signed_in"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def allowed_hosts(s: Settings) -> set[str]:
    names = set(s.dashboard_hosts)
    if s.dashboard_url:
        names.add((urlsplit(s.dashboard_url).hostname or "").lower())
    return names


def host_name(header: str) -> str:
    """``example.com:8501`` -> ``example.com``; ``[::1]:8501`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str | None, names: set[str]) -> bool:
    return header is None or host_name(header) in names


@st.cache_resource
def _password_hash() -> tuple[bytes, bytes]:
    """The password as salt and scrypt hash, made once per process."""
    salt = os.urandom(16)
    return salt, hashlib.scrypt(settings().dashboard_password.reveal().encode(), salt=salt,
                                **_SCRYPT)


def password_matches(candidate: str) -> bool:
    salt, expected = _password_hash()
    return hmac.compare_digest(hashlib.scrypt(candidate.encode(), salt=salt, **_SCRYPT),
                               expected)


def user_allowed(email: str | None, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    if not email:
        return False
    email = email.lower()
    return email in allowed or any(a.startswith("@") and email.endswith(a) for a in allowed)


def _refuse(message: str) -> None:
    st.error(message)
    st.stop()


def _oidc(s: Settings) -> None:
    if not st.user.is_logged_in:
        st.title("smsledger")
        st.write("Sign in to see the delivery dashboard.")
        st.button("Sign in", on_click=st.login, type="primary")
        st.stop()
    email = st.user.get("email")
    if not user_allowed(str(email) if email else None, s.dashboard_users):
        st.button("Sign out", on_click=st.logout)
        _refuse(f"{email or 'This account'} may not see this dashboard "
                "(SMSLEDGER_DASHBOARD_USERS).")
    st.sidebar.caption(f"Signed in as {email or st.user.get('sub')}")
    st.sidebar.button("Sign out", on_click=st.logout)


def _password() -> None:
    if st.session_state.get(SIGNED_IN) is True:
        if st.sidebar.button("Sign out"):
            del st.session_state[SIGNED_IN]
            st.rerun()
        return
    st.title("smsledger")
    with st.form("sign_in"):
        typed = st.text_input("Password", type="password", key="password")
        sent = st.form_submit_button("Sign in", type="primary")
    if sent:
        if password_matches(typed):
            st.session_state[SIGNED_IN] = True
            st.rerun()
        time.sleep(1)   # each wrong guess costs a second of this session's thread
        st.error("Wrong password.")
    st.stop()


def gate() -> None:
    """Stop the script here unless this request may see the dashboard."""
    s = settings()
    if not host_allowed(st.context.headers.get("Host"), allowed_hosts(s)):
        _refuse("This dashboard does not answer under this host name. (Set "
                "SMSLEDGER_DASHBOARD_HOSTS or SMSLEDGER_DASHBOARD_URL to serve it under "
                "another name.)")
    if s.oidc_metadata_url:
        _oidc(s)
    elif s.dashboard_password:
        _password()
