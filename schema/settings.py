"""One settings object per process, read once from the environment.

The settings are declared once, as a table (``SETTINGS``), which feeds the parser, the defaults
of ``Settings``, the CLI's options and ``--help`` (``smsledger settings`` prints it whole) and the
README (a test checks the README names every one). To add one: a ``Setting`` entry in the table
and a typed attribute (no default) on ``Settings``. Values are typed and checked
at start; an error names the variable. Secrets are wrapped so that they never show in a repr or a
log line.

It lives in ``schema`` because every part of the flow (ingest, analytics, the shell) needs it and
``schema`` is the one package they all may import.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
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


def _smtp_url(name: str, raw: str) -> str:
    if not raw:
        return ""
    parts = urlsplit(raw)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or not query.get("to") \
            or not query.get("from"):
        raise SettingsError(f"{name} must look like smtp://host:port?from=ADDR&to=ADDR")
    return raw


def _port(name: str, raw: str) -> int:
    if raw.strip() == "0":
        return 0
    value = _positive_int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name} must be a port number (1-65535) or 0, not {value}")
    return value


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


def _opt_out_scope(name: str, raw: str) -> str:
    scope = raw.lower()
    if scope not in ("account", "sender"):
        raise SettingsError(f"{name} must be account or sender, not {raw!r}")
    return scope


def shared_keys(raw: str, name: str = "SMSLEDGER_WEBHOOK_SHARED_KEYS") -> dict[str, str]:
    """``KSaaa=secret1,KSbbb=secret2`` as {key id: secret}. Errors name the variable and the
    pair's place, never a secret (the value is a secret as a whole)."""
    keys: dict[str, str] = {}
    if not raw.strip():
        return keys
    for i, pair in enumerate(raw.split(","), start=1):
        key_id, sep, secret = pair.strip().partition("=")
        key_id, secret = key_id.strip(), secret.strip()
        if not sep or not secret:
            raise SettingsError(f"{name}: pair {i} is not `key id=secret` (comma-separated "
                                "pairs such as KSaaa=secret1,KSbbb=secret2)")
        if not key_id.isascii() or not key_id.replace("_", "").replace("-", "").isalnum():
            raise SettingsError(f"{name}: pair {i}: the key id must be letters, digits, - or _ "
                                "(a Twilio SharedKey SID such as KS...)")
        if key_id in keys:
            raise SettingsError(f"{name}: key id {key_id} is given twice")
        keys[key_id] = secret
    return keys


def _shared_keys(name: str, raw: str) -> str:
    shared_keys(raw, name)  # checked at start; kept as text, hidden as a Secret
    return raw


def _names(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list, lower-cased, blanks dropped."""
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _optional_path(name: str, raw: str) -> Path | None:
    return Path(raw) if raw else None


_METAVARS: dict[Callable[[str, str], Any], str] = {
    _positive_int: "INTEGER", _off_or_positive_int: "INTEGER", _positive_float: "SECONDS",
    _off_or_positive_float: "SECONDS", _http_url: "URL", _optional_http_url: "URL",
    _database_url: "URL", _flag: "0|1", _log_level: "LEVEL", _path: "PATH", _optional_path: "PATH",
    _names: "A,B,...",
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting, declared once: its ``Settings`` attribute, environment variable, default (as
    the environment would spell it), meaning, parser (``parse(variable, raw)``, raising
    SettingsError that names the variable) and whether it is a secret."""

    field: str
    env: str
    default: str
    help: str
    parse: Callable[[str, str], Any] = _text
    secret: bool = False

    def value(self, raw: str) -> Any:
        """The typed value of ``raw`` (from the environment, a flag or the default); a bad one
        raises SettingsError naming the variable."""
        parsed = self.parse(self.env, raw.strip())
        return Secret(parsed) if self.secret else parsed

    @property
    def metavar(self) -> str:
        """What the value looks like, for ``--help``."""
        return _METAVARS.get(self.parse, "TEXT")


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "DATABASE_URL", "",
            "PostgreSQL URL of the event store. The README's commands find or start one when "
            "unset.", _database_url),
    Setting("twilio_account_sid", "TWILIO_ACCOUNT_SID", "", "Twilio account SID (AC...)."),
    Setting("twilio_auth_token", "TWILIO_AUTH_TOKEN", "",
            "Twilio auth token: signs and verifies webhooks, authenticates API calls.",
            secret=True),
    Setting("twilio_auth_token_secondary", "TWILIO_AUTH_TOKEN_SECONDARY", "",
            "Twilio's secondary auth token during a rotation: webhooks signed with it are "
            "accepted too while it is set (a warning once an hour while it is in use).",
            secret=True),
    Setting("webhook_shared_keys", "SMSLEDGER_WEBHOOK_SHARED_KEYS", "",
            "Twilio SharedKeys for webhook signatures: comma-separated `key id=secret` pairs "
            "(several during a rotation). A webhook whose X-Twilio-Webhooks-Signature-Settings "
            "names key=<id> is checked with that secret.", _shared_keys, secret=True),
    Setting("twilio_phone_number", "TWILIO_PHONE_NUMBER", "",
            "Default sender (E.164 number, short code or alphanumeric ID)."),
    Setting("twilio_messaging_service_sid", "TWILIO_MESSAGING_SERVICE_SID", "",
            "The Messaging Service (MG...) your sends go through, if any: `smsledger doctor` "
            "checks that its inbound and status callback URLs point at this ingester."),
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
            _path),
    Setting("max_body_bytes", "SMSLEDGER_MAX_BODY_BYTES", "65536",
            "Largest webhook body accepted; larger ones get 413.", _positive_int),
    Setting("max_form_fields", "SMSLEDGER_MAX_FORM_FIELDS", "256",
            "Most fields a webhook form may have (Twilio's largest, an MMS with 10 media, has "
            "about 50); more get 400 before the signature is checked.", _positive_int),
    Setting("body_timeout_s", "SMSLEDGER_BODY_TIMEOUT_S", "10",
            "Seconds a request's body may take to arrive once its headers have; slower ones get "
            "408 and the connection is closed.", _positive_float),
    Setting("max_slow_readers", "SMSLEDGER_MAX_SLOW_READERS", "64",
            "Requests whose body is still arriving after their headers, at most at once; more "
            "get 503 at once.", _positive_int),
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
    Setting("opt_out_scope", "SMSLEDGER_OPT_OUT_SCOPE", "account",
            "What a STOP refuses: `account` (every send to that person, from any sender: the "
            "conservative default) or `sender` (as Twilio scopes it: sends through the "
            "Messaging Service the STOP reached, or from the plain number it was sent to).",
            _opt_out_scope),
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
            "analytics/hygiene_rules.toml).", _optional_path),
    Setting("notify_url", "SMSLEDGER_NOTIFY_URL", "",
            "POST a JSON summary of each hygiene report here (empty: don't).",
            _optional_http_url),
    Setting("reconcile_every_s", "SMSLEDGER_RECONCILE_EVERY_S", "300",
            "Seconds between reconciliations in `smsledger worker` (0: never).",
            _off_or_positive_float),
    Setting("reconcile_after_s", "SMSLEDGER_RECONCILE_AFTER_S", "600",
            "A send with no terminal status this many seconds later is fetched from the "
            "Messages API.", _positive_float),
    Setting("prices", "SMSLEDGER_PRICES", "",
            "A TOML price table replacing the shipped one (see analytics/prices.toml): the "
            "estimates until Twilio's final price arrives.", _optional_path),
    Setting("price_fill_after_s", "SMSLEDGER_PRICE_FILL_AFTER_S", "86400",
            "A send this many seconds old with no final price yet is fetched from the Messages "
            "API for it (Twilio fills prices in up to 24 h late).", _positive_float),
    Setting("price_fill_every_s", "SMSLEDGER_PRICE_FILL_EVERY_S", "300",
            "Seconds between price fill-in rounds in `smsledger worker` (0: never).",
            _off_or_positive_float),
    Setting("price_fill_limit", "SMSLEDGER_PRICE_FILL_LIMIT", "500",
            "Messages fetched for their price per round (0: off).", _off_or_positive_int),
    Setting("fraud_guard", "SMSLEDGER_FRAUD_GUARD", "0",
            "1: while a `pumping` alert is open for a number prefix, OTP sends and Verify "
            "starts to it get 409 and nothing is sent; 0: alerts only.", _flag),
    Setting("show_numbers", "SMSLEDGER_SHOW_NUMBERS", "0",
            "1: the dashboard shows whole phone numbers; 0: only their last 4 digits.", _flag),
    Setting("alert_rules", "SMSLEDGER_ALERT_RULES", "",
            "A TOML file of alert rules replacing the shipped ones (see "
            "analytics/alert_rules.toml).", lambda _n, raw: Path(raw) if raw else None),
    Setting("alert_webhook_url", "SMSLEDGER_ALERT_WEBHOOK_URL", "",
            "POST each alert opening and resolution here as JSON (Slack-compatible `text`; "
            "empty: don't).", _optional_http_url, secret=True),
    Setting("smtp_url", "SMSLEDGER_SMTP_URL", "",
            "Also mail each alert transition: smtp://[user:password@]host[:port]"
            "?from=ADDR&to=ADDR[,ADDR] (smtps:// for TLS; empty: no mail).", _smtp_url,
            secret=True),
    Setting("ingest_url", "SMSLEDGER_INGEST_URL", "",
            "The ingester's base URL: the worker reads its /metrics for the ingest_degraded "
            "alert (spool in use, 403 share; empty: not watched).", _optional_http_url),
    Setting("worker_metrics_port", "SMSLEDGER_WORKER_METRICS_PORT", "0",
            "Serve the worker's Prometheus gauges (delivery rate, volume, OTP p50 per carrier "
            "and per country) on 127.0.0.1:PORT/metrics (0: off).", _port),
    Setting("log_level", "SMSLEDGER_LOG_LEVEL", "INFO",
            "DEBUG, INFO, WARNING or ERROR.", _log_level),
    Setting("dashboard_password", "SMSLEDGER_DASHBOARD_PASSWORD", "",
            "Password for the dashboard when no OpenID Connect provider is configured. "
            "Empty (and no provider): the dashboard listens on 127.0.0.1 only.", secret=True),
    Setting("oidc_metadata_url", "SMSLEDGER_OIDC_METADATA_URL", "",
            "OpenID Connect discovery URL of the identity provider the dashboard signs in "
            "with (e.g. https://accounts.google.com/.well-known/openid-configuration); with "
            "it, SMSLEDGER_OIDC_CLIENT_ID and SMSLEDGER_OIDC_CLIENT_SECRET.",
            _optional_http_url),
    Setting("oidc_client_id", "SMSLEDGER_OIDC_CLIENT_ID", "",
            "The dashboard's client ID at the identity provider."),
    Setting("oidc_client_secret", "SMSLEDGER_OIDC_CLIENT_SECRET", "",
            "The dashboard's client secret at the identity provider.", secret=True),
    Setting("dashboard_users", "SMSLEDGER_DASHBOARD_USERS", "",
            "Who may see the dashboard after signing in with the provider: e-mail addresses "
            "and @domains, comma-separated (empty: anyone the provider signs in).", _names),
    Setting("dashboard_url", "SMSLEDGER_DASHBOARD_URL", "",
            "The dashboard's URL as browsers reach it (the sign-in's return address is this "
            "plus /oauth2callback; its host name is allowed). Empty: "
            "http://localhost:PORT.", _optional_http_url),
    Setting("dashboard_hosts", "SMSLEDGER_DASHBOARD_HOSTS", "localhost,127.0.0.1,::1",
            "Host names the dashboard answers to (requests for any other Host header are "
            "refused: DNS rebinding), comma-separated; the host of SMSLEDGER_DASHBOARD_URL "
            "is added.", _names),
)


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class Settings:
    """The typed settings of one process. Each attribute's default, parser and meaning are in
    ``SETTINGS`` (declared there only); this class gives each a type for mypy. A setting added to
    the table needs its typed attribute here, without a default (checked at import)."""

    database_url: str
    twilio_account_sid: str
    twilio_auth_token: Secret
    twilio_phone_number: str
    twilio_messaging_service_sid: str
    twilio_verify_service_sid: str
    twilio_api_url: str
    api_key: Secret
    public_url: str
    trust_forwarded: bool
    data_dir: Path
    max_body_bytes: int
    max_form_fields: int
    body_timeout_s: float
    max_slow_readers: int
    queue_size: int
    batch_max: int
    db_pool_size: int
    db_timeout_s: float
    help_reply: str
    opt_out_reply: str
    opt_in_reply: str
    twilio_timeout_s: float
    rollup_interval_s: float
    hygiene_every_s: float
    compact_every_s: float
    lake_keep_s: float
    lookup_limit: int
    hygiene_rules: Path | None
    notify_url: str
    reconcile_every_s: float
    reconcile_after_s: float
    prices: Path | None
    price_fill_after_s: float
    price_fill_every_s: float
    price_fill_limit: int
    fraud_guard: bool
    alert_rules: Path | None
    alert_webhook_url: Secret
    smtp_url: Secret
    ingest_url: str
    worker_metrics_port: int
    show_numbers: bool
    log_level: str
    twilio_auth_token_secondary: Secret
    webhook_shared_keys: Secret
    opt_out_scope: str
    dashboard_password: Secret
    oidc_metadata_url: str
    oidc_client_id: str
    oidc_client_secret: Secret
    dashboard_users: tuple[str, ...]
    dashboard_url: str
    dashboard_hosts: tuple[str, ...]

    def __init__(self, **values: Any) -> None:
        """Every setting not given takes the table's default (parsed as from the environment)."""
        unknown = sorted(values.keys() - _BY_FIELD.keys())
        if unknown:
            raise TypeError(f"Settings has no setting(s) {', '.join(unknown)}")
        for setting in SETTINGS:
            value = values[setting.field] if setting.field in values else setting.value(
                setting.default)
            object.__setattr__(self, setting.field, value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default: the process environment) once.

        ``overrides`` (field name → already typed value, e.g. from CLI flags) win over the
        environment.
        """
        env = os.environ if environ is None else environ
        values = {s.field: s.value(env.get(s.env, s.default)) for s in SETTINGS
                  if s.field not in overrides}
        return cls(**values, **overrides)

    def require(self, *fields: str) -> None:
        """Fail loudly, naming the variables, when a command needs settings that are unset."""
        missing = [_BY_FIELD[f].env for f in fields if not getattr(self, f)]
        if missing:
            raise SettingsError("missing setting(s): " + ", ".join(missing) +
                                " (set them in the environment; see `smsledger settings`)")

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url" and value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return "Settings(" + ", ".join(shown) + ")"


_BY_FIELD = {s.field: s for s in SETTINGS}


def _check_declared_once() -> None:
    """Each table entry has its typed attribute on Settings, and the default is in the table only
    (a second default could drift from the first: one of them would be a lie)."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    untyped = [f for f in _BY_FIELD if f not in fields]
    unlisted = [f for f in fields if f not in _BY_FIELD]
    doubled = [f.name for f in fields.values() if f.default is not dataclasses.MISSING
               or f.default_factory is not dataclasses.MISSING]
    if untyped or unlisted or doubled:
        raise TypeError(
            "schema/settings.py: "
            + (f"give these SETTINGS a typed attribute on Settings: {untyped}; " if untyped
               else "")
            + (f"declare these Settings attributes in SETTINGS: {unlisted}; " if unlisted else "")
            + (f"remove these defaults from Settings, SETTINGS has them: {doubled}" if doubled
               else ""))


_check_declared_once()


def settings_table(settings: Sequence[Setting] = SETTINGS) -> str:
    """The settings as text: variable, default and meaning, one block each."""
    lines = []
    for s in settings:
        default = " (secret)" if s.secret else (f" [default: {s.default}]" if s.default else "")
        lines.append(f"{s.env}{default}\n    {s.help}")
    return "\n".join(lines)
