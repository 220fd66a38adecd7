"""One settings object per process, read once from the environment.

The settings are declared once, as a table (``SETTINGS``), which feeds the parser, the CLI's
``--help`` and the README (a test checks the README names every one). Values are typed and checked
at start; an error names the variable. Secrets are wrapped so that they never show in a repr or a
log line.

It lives in ``schema`` because every part of the flow (ingest, analytics, the shell) needs it and
``schema`` is the one package they all may import.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Secret:
    """A string that does not show itself: ``repr``/``str`` print a mask, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


def redact_url(url: str) -> str:
    """A database URL fit for a log line: the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, not {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, not {value}")
    return value


def _off_or_positive_float(name: str, raw: str) -> float:
    """0 switches the thing off; anything else must be a positive number."""
    return 0.0 if raw.strip() == "0" else _positive_float(name, raw)


def _off_or_positive_int(name: str, raw: str) -> int:
    return 0 if raw.strip() == "0" else _positive_int(name, raw)


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL such as https://sms.example.com, "
                            f"not {raw!r}")
    return raw.rstrip("/")


def _optional_http_url(name: str, raw: str) -> str:
    return _http_url(name, raw) if raw else ""


def _database_url(name: str, raw: str) -> str:
    if raw and urlsplit(raw).scheme not in ("postgres", "postgresql"):
        raise SettingsError(f"{name} must be a postgresql:// URL")
    return raw


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, not {raw!r}")
    return level


def _text(name: str, raw: str) -> str:
    return raw


@dataclasses.dataclass(frozen=True)
class Setting:
    field: str
    env: str
    default: str
    help: str
    parse: Callable[[str, str], Any] = _text
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "DATABASE_URL", "",
            "PostgreSQL URL of the event store. The README's commands find or start one when "
            "unset.", _database_url),
    Setting("twilio_account_sid", "TWILIO_ACCOUNT_SID", "", "Twilio account SID (AC...)."),
    Setting("twilio_auth_token", "TWILIO_AUTH_TOKEN", "",
            "Twilio auth token: signs and verifies webhooks, authenticates API calls.",
            secret=True),
    Setting("twilio_phone_number", "TWILIO_PHONE_NUMBER", "",
            "Default sender (E.164 number, short code or alphanumeric ID)."),
    Setting("twilio_verify_service_sid", "TWILIO_VERIFY_SERVICE_SID", "",
            "Twilio Verify service (VA...) for /v1/verify/start and /v1/verify/check."),
    Setting("twilio_api_url", "SMSLEDGER_TWILIO_API_URL", "",
            "Send Twilio API calls here instead of Twilio (the local simulator, or any "
            "Twilio-compatible base URL). Empty: the real Twilio.", _optional_http_url),
    Setting("api_key", "SMSLEDGER_API_KEY", "",
            "Bearer key for the /v1 API (sending spends money). Empty: /v1 answers 401.",
            secret=True),
    Setting("public_url", "SMSLEDGER_PUBLIC_URL", "http://127.0.0.1:8080",
            "Base URL Twilio calls (as Twilio sees it, e.g. behind a TLS proxy); webhook "
            "signatures are checked against it plus the request path.", _http_url),
    Setting("trust_forwarded", "SMSLEDGER_TRUST_FORWARDED", "0",
            "1: take the URL Twilio signed from X-Forwarded-Proto and X-Forwarded-Host (only "
            "behind a proxy that sets them and strips them from clients); 0: use "
            "SMSLEDGER_PUBLIC_URL.", _flag),
    Setting("data_dir", "SMSLEDGER_DATA_DIR", ".smsledger",
            "Directory for the spool, the DuckDB files, reports and a private PostgreSQL cluster.",
            lambda _n, raw: Path(raw)),
    Setting("max_body_bytes", "SMSLEDGER_MAX_BODY_BYTES", "65536",
            "Largest webhook body accepted; larger ones get 413.", _positive_int),
    Setting("queue_size", "SMSLEDGER_QUEUE_SIZE", "20000",
            "Events waiting for the group commit; when full, requests get 503 at once.",
            _positive_int),
    Setting("batch_max", "SMSLEDGER_BATCH_MAX", "2000",
            "Most events written in one group-commit transaction.", _positive_int),
    Setting("db_pool_size", "SMSLEDGER_DB_POOL_SIZE", "4",
            "PostgreSQL connections the ingester holds at most (at least 3: the two "
            "group-commit flushers keep one each).", _positive_int),
    Setting("db_timeout_s", "SMSLEDGER_DB_TIMEOUT_S", "5",
            "Seconds a group commit may take before its requests get 503.", _positive_float),
    Setting("help_reply", "SMSLEDGER_HELP_REPLY", "",
            "TwiML reply to HELP/INFO (empty: none; Twilio replies itself for Messaging "
            "Services with Advanced Opt-Out)."),
    Setting("opt_out_reply", "SMSLEDGER_OPT_OUT_REPLY", "",
            "TwiML reply to STOP and the other opt-out keywords (empty: none)."),
    Setting("opt_in_reply", "SMSLEDGER_OPT_IN_REPLY", "",
            "TwiML reply to START/YES/UNSTOP (empty: none)."),
    Setting("twilio_timeout_s", "SMSLEDGER_TWILIO_TIMEOUT_S", "10",
            "Seconds a Twilio API call may take before the request gets 502.", _positive_float),
    Setting("rollup_interval_s", "SMSLEDGER_ROLLUP_INTERVAL_S", "5",
            "Seconds between rollups in `smsledger worker` / `smsledger rollup`.",
            _positive_float),
    Setting("hygiene_every_s", "SMSLEDGER_HYGIENE_EVERY_S", "3600",
            "Seconds between hygiene reports in `smsledger worker` (0: never).",
            _off_or_positive_float),
    Setting("compact_every_s", "SMSLEDGER_COMPACT_EVERY_S", "600",
            "Seconds between compactions of the analytics lake in `smsledger worker` (merge "
            "small files, expire old snapshots, delete unreferenced files; 0: never).",
            _off_or_positive_float),
    Setting("lake_keep_s", "SMSLEDGER_LAKE_KEEP_S", "3600",
            "Seconds an analytics lake snapshot, and the files it reads, outlive the next "
            "one: the longest a reader's query may run across compactions.", _positive_float),
    Setting("lookup_limit", "SMSLEDGER_LOOKUP_LIMIT", "50",
            "Numbers looked up with Twilio Lookup v2 per worker run (paid per request; 0: "
            "off; off anyway without Twilio credentials).",
            _off_or_positive_int),
    Setting("hygiene_rules", "SMSLEDGER_HYGIENE_RULES", "",
            "A TOML file of list-hygiene rules replacing the shipped ones (see "
            "analytics/hygiene_rules.toml).", lambda _n, raw: Path(raw) if raw else None),
    Setting("notify_url", "SMSLEDGER_NOTIFY_URL", "",
            "POST a JSON summary of each hygiene report here (empty: don't).",
            _optional_http_url),
    Setting("reconcile_every_s", "SMSLEDGER_RECONCILE_EVERY_S", "300",
            "Seconds between reconciliations in `smsledger worker` (0: never).",
            _off_or_positive_float),
    Setting("reconcile_after_s", "SMSLEDGER_RECONCILE_AFTER_S", "600",
            "A send with no terminal status this many seconds later is fetched from the "
            "Messages API.", _positive_float),
    Setting("show_numbers", "SMSLEDGER_SHOW_NUMBERS", "0",
            "1: the dashboard shows whole phone numbers; 0: only their last 4 digits.", _flag),
    Setting("log_level", "SMSLEDGER_LOG_LEVEL", "INFO",
            "DEBUG, INFO, WARNING or ERROR.", _log_level),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: Secret = dataclasses.field(default_factory=lambda: Secret(""))
    twilio_phone_number: str = ""
    twilio_verify_service_sid: str = ""
    twilio_api_url: str = ""
    api_key: Secret = dataclasses.field(default_factory=lambda: Secret(""))
    public_url: str = "http://127.0.0.1:8080"
    trust_forwarded: bool = False
    data_dir: Path = Path(".smsledger")
    max_body_bytes: int = 65536
    queue_size: int = 20000
    batch_max: int = 2000
    db_pool_size: int = 4
    db_timeout_s: float = 5.0
    help_reply: str = ""
    opt_out_reply: str = ""
    opt_in_reply: str = ""
    twilio_timeout_s: float = 10.0
    rollup_interval_s: float = 5.0
    hygiene_every_s: float = 3600.0
    compact_every_s: float = 600.0
    lake_keep_s: float = 3600.0
    lookup_limit: int = 50
    hygiene_rules: Path | None = None
    notify_url: str = ""
    reconcile_every_s: float = 300.0
    reconcile_after_s: float = 600.0
    show_numbers: bool = False
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default: the process environment) once.

        ``overrides`` (field name → already typed value, e.g. from CLI flags) win over the
        environment.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.field in overrides:
                continue
            raw = env.get(setting.env, setting.default).strip()
            value = setting.parse(setting.env, raw)
            values[setting.field] = Secret(value) if setting.secret else value
        values.update(overrides)
        return cls(**values)

    def require(self, *fields: str) -> None:
        """Fail loudly, naming the variables, when a command needs settings that are unset."""
        by_field = {s.field: s for s in SETTINGS}
        missing = [by_field[f].env for f in fields if not getattr(self, f)]
        if missing:
            raise SettingsError("missing setting(s): " + ", ".join(missing) +
                                " (set them in the environment; see `smsledger --help`)")

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url" and value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return "Settings(" + ", ".join(shown) + ")"


def settings_help() -> str:
    """The settings as a block of text for ``--help``: variable, default, meaning."""
    lines = ["settings (environment variables):"]
    for s in SETTINGS:
        default = "" if s.secret else (f" [default: {s.default}]" if s.default else "")
        lines.append(f"  {s.env}{default}\n      {s.help}")
    return "\n".join(lines)
