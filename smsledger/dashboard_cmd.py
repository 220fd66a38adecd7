"""``smsledger dashboard``: Streamlit started with the settings that keep it private.

Who may see it (dashboard/auth.py enforces it in the app):
- an OpenID Connect provider configured (``SMSLEDGER_OIDC_*``): Streamlit's own ``st.login``,
  whose ``[auth]`` section is written here, at each start, to a 0600 ``secrets.toml`` in a
  0700 directory under the data dir (the client secret is never printed or logged);
- else ``SMSLEDGER_DASHBOARD_PASSWORD``;
- else nobody but this machine: the dashboard listens on 127.0.0.1 only, and says so.

Always: Streamlit shows no error details (a traceback tells an attacker what runs), and the app
refuses requests whose Host header is not one of its names (DNS rebinding).
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dashboard
from schema.private_files import private_dir, write_private
from schema.settings import Settings, SettingsError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def auth_mode(settings: Settings) -> str:
    """``oidc``, ``password`` or ``none``; a half-configured provider is an error."""
    if settings.oidc_metadata_url or settings.oidc_client_id or settings.oidc_client_secret:
        settings.require("oidc_metadata_url", "oidc_client_id", "oidc_client_secret")
        return "oidc"
    return "password" if settings.dashboard_password else "none"


def dashboard_url(settings: Settings, port: int) -> str:
    return settings.dashboard_url or f"http://localhost:{port}"


def secrets_toml(settings: Settings, port: int) -> str:
    """Streamlit's ``[auth]`` section for ``st.login`` (strings as TOML basic strings: JSON's
    escapes are TOML's)."""
    values = {
        "redirect_uri": dashboard_url(settings, port) + "/oauth2callback",
        # Signs the login cookie; a new one at each start (a restart signs everyone out).
        "cookie_secret": secrets.token_urlsafe(32),
        "client_id": settings.oidc_client_id,
        "client_secret": settings.oidc_client_secret.reveal(),
        "server_metadata_url": settings.oidc_metadata_url,
    }
    return "[auth]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def prepare(settings: Settings, host: str, port: int) -> tuple[list[str], str]:
    """The Streamlit command line, and the line to print at start. Writes (or removes) the
    secrets file; refuses a non-loopback address without authentication."""
    mode = auth_mode(settings)
    if mode == "none" and host not in LOOPBACK:
        raise SettingsError(
            f"refusing to listen on {host} without authentication: anyone who reaches the "
            "port would see the dashboard. Set SMSLEDGER_DASHBOARD_PASSWORD, or an OpenID "
            "Connect provider (SMSLEDGER_OIDC_METADATA_URL, SMSLEDGER_OIDC_CLIENT_ID, "
            "SMSLEDGER_OIDC_CLIENT_SECRET), or listen on 127.0.0.1")
    folder = private_dir(settings.data_dir / "dashboard")
    secrets_file = folder / "secrets.toml"
    app = Path(dashboard.__file__).parent / "app.py"
    argv = [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            # No Deploy button (it offers to publish to Streamlit's cloud); Streamlit's own
            # log lines follow SMSLEDGER_LOG_LEVEL like every other part.
            "--client.toolbarMode", "minimal", "--logger.level", settings.log_level.lower(),
            # No tracebacks or exception messages in the browser: they show code and data.
            "--client.showErrorDetails", "none"]
    if mode == "oidc":
        write_private(secrets_file, secrets_toml(settings, port).encode())
        # Only our file: a secrets.toml in the working directory must not replace [auth].
        argv += ["--secrets.files", str(secrets_file)]
        said = (f"dashboard: sign-in through {urlsplit(settings.oidc_metadata_url).netloc}"
                + (f" for {', '.join(settings.dashboard_users)}" if settings.dashboard_users
                   else " (any account the provider signs in: see SMSLEDGER_DASHBOARD_USERS)"))
    else:
        secrets_file.unlink(missing_ok=True)   # no stale client secret left behind
        said = ("dashboard: password sign-in (SMSLEDGER_DASHBOARD_PASSWORD)" if mode == "password"
                else f"dashboard: no authentication configured, so listening on {host} only "
                     "(set SMSLEDGER_DASHBOARD_PASSWORD or SMSLEDGER_OIDC_* to open it up)")
    return argv, said


