"""``smsledger doctor``: check a real deployment and say what to fix, in plain words.

Each check reads what a running smsledger depends on — its settings, PostgreSQL and the
migrations, the public URL Twilio calls, the Twilio account, the sender's and the Messaging
Service's webhook URLs, the Verify service — and answers ``ok``, ``warn`` (works, but look) or
``FAIL`` (something is broken or will lose data) with the fix. Nothing is changed anywhere:
every call is a read. The command exits 1 when any check fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import phonenumbers
from twilio.base.exceptions import TwilioException, TwilioRestException

from schema.migrate import load_migrations
from schema.settings import Settings, SettingsError, redact_url
from twilio_api.client import UNREACHABLE, make_client

Level = Literal["ok", "warn", "fail"]
TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    text: str


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _twilio_said(exc: TwilioException) -> str:
    if isinstance(exc, TwilioRestException):
        hint = (" — check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" if exc.status in (401, 403)
                else "")
        return f"Twilio answered HTTP {exc.status} (code {exc.code}){hint}"
    return f"Twilio refused the request ({exc})"


async def check_database(settings: Settings) -> list[Finding]:
    if not settings.database_url:
        return [Finding("database", "fail", "DATABASE_URL is not set: the ingester has nowhere "
                        "to store events.")]
    where = redact_url(settings.database_url)
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return [Finding("database", "fail", f"PostgreSQL at {where} did not answer "
                        f"({type(exc).__name__}): is it running, and is DATABASE_URL right?")]
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations") \
            if exists else []
    finally:
        await conn.close()
    applied = {r["version"]: r["checksum"] for r in rows}
    shipped = load_migrations()
    missing = [m for m in shipped if m.version not in applied]
    changed = [m for m in shipped if m.version in applied and applied[m.version] != m.checksum]
    found = [Finding("database", "ok", f"PostgreSQL answers at {where}")]
    if changed:
        found.append(Finding("migrations", "fail", "migration(s) "
                             + ", ".join(f"{m.version:04d}_{m.name}" for m in changed)
                             + " differ from what was applied: this database was migrated by "
                             "another version of smsledger."))
    elif missing:
        found.append(Finding("migrations", "fail", f"{len(missing)} of {len(shipped)} "
                             "migrations are not applied: run `smsledger migrate`."))
    else:
        found.append(Finding("migrations", "ok", f"all {len(shipped)} migrations applied"))
    return found


async def check_public_url(settings: Settings) -> list[Finding]:
    url = settings.public_url
    found: list[Finding] = []
    if urlsplit(url).scheme == "https":
        found.append(Finding("public URL", "ok", f"{url} is https"))
    elif _loopback(url):
        found.append(Finding("public URL", "warn", f"{url} is a loopback address: fine with "
                             "the local simulator, but Twilio cannot reach it. For a real "
                             "account put a TLS proxy in front of the ingester and set "
                             "SMSLEDGER_PUBLIC_URL to its https URL."))
    else:
        found.append(Finding("public URL", "fail", f"{url} is plain http: webhooks (numbers, "
                             "message bodies) would cross the internet unencrypted. Put a TLS "
                             "proxy in front of the ingester and set SMSLEDGER_PUBLIC_URL to "
                             "its https URL."))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http:
            async with http.get(url + "/healthz") as resp:
                healthy = resp.status == 200
                status = resp.status
            async with http.get(url + "/readyz") as resp:
                ready = await resp.json(content_type=None) if resp.status in (200, 503) else {}
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        found.append(Finding("ingester", "fail", f"nothing answered {url}/healthz "
                             f"({type(exc).__name__}): is `smsledger serve` running, and does "
                             "the proxy forward to it?"))
        return found
    if not healthy:
        found.append(Finding("ingester", "fail", f"{url}/healthz answered HTTP {status}, not "
                             "200: something else is at that URL, or the proxy is misrouted."))
    elif isinstance(ready, dict) and ready.get("status") == "ready":
        found.append(Finding("ingester", "ok", f"an smsledger ingester answers at {url}"))
    else:
        state = ready.get("status") if isinstance(ready, dict) else None
        found.append(Finding("ingester", "warn", f"the ingester at {url} says {state!r}: "
                             "events are spooled on its disk until PostgreSQL answers."))
    return found


async def check_twilio(settings: Settings) -> list[Finding]:
    missing = [env for env, value in (("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                                      ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token))
               if not value]
    if missing:
        return [Finding("twilio", "fail", " and ".join(missing) + " not set: smsledger cannot "
                        "verify webhooks, send, or reconcile. Copy them from the Twilio "
                        "Console's account dashboard.")]
    client, http = make_client(settings)
    try:
        return await _check_twilio(settings, client)
    finally:
        await http.close()


async def _check_twilio(settings: Settings, client: Any) -> list[Finding]:
    found: list[Finding] = []
    try:
        account = await client.api.v2010.accounts(settings.twilio_account_sid).fetch_async()
    except TwilioException as exc:
        return [Finding("twilio", "fail", "the credentials do not open the account: "
                        + _twilio_said(exc))]
    except UNREACHABLE as exc:
        return [Finding("twilio", "fail", f"Twilio could not be reached "
                        f"({type(exc).__name__}); check the network (and "
                        "SMSLEDGER_TWILIO_API_URL, if set).")]
    if account.status != "active":
        found.append(Finding("twilio", "fail", f"account {account.sid} is {account.status!r}, "
                             "not active: Twilio will refuse to send."))
    else:
        found.append(Finding("twilio", "ok", f"credentials open account {account.sid} "
                             f"({account.friendly_name})"))
    inbound = settings.public_url + "/twilio/inbound"
    status_url = settings.public_url + "/twilio/status"
    number = settings.twilio_phone_number
    service_sid = settings.twilio_messaging_service_sid
    if not number and not service_sid:
        found.append(Finding("sender", "warn", "neither TWILIO_PHONE_NUMBER nor "
                             "TWILIO_MESSAGING_SERVICE_SID is set: every /v1/messages call "
                             "must name `from` or `messaging_service_sid`."))
    if number:
        found.append(await _check_number(client, number, inbound,
                                         covered_by_service=bool(service_sid)))
    if service_sid:
        found.extend(await _check_service(client, service_sid, inbound, status_url))
    if settings.twilio_verify_service_sid:
        try:
            service = await client.verify.v2.services(
                settings.twilio_verify_service_sid).fetch_async()
            found.append(Finding("verify", "ok", f"Verify service {service.sid} "
                                 f"({service.friendly_name}) exists"))
        except TwilioException as exc:
            found.append(Finding("verify", "fail", f"TWILIO_VERIFY_SERVICE_SID "
                                 f"{settings.twilio_verify_service_sid}: " + _twilio_said(exc)))
    return found


async def _check_number(client: Any, number: str, inbound: str, *,
                        covered_by_service: bool) -> Finding:
    try:
        is_phone = phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        is_phone = False
    if not is_phone:
        return Finding("sender", "warn", f"TWILIO_PHONE_NUMBER {number!r} is not a phone number "
                       "(a short code or alphanumeric sender): its webhooks are not checked.")
    try:
        owned = await client.incoming_phone_numbers.list_async(phone_number=number, limit=1)
    except TwilioException as exc:
        return Finding("sender", "fail", "could not list the account's numbers: "
                       + _twilio_said(exc))
    if not owned:
        return Finding("sender", "fail", f"TWILIO_PHONE_NUMBER {number} is not a number of "
                       "this account: sends from it will be refused.")
    sms_url = owned[0].sms_url or ""
    if sms_url.rstrip("/") == inbound:
        return Finding("sender", "ok", f"{number} sends its incoming messages to {inbound}")
    if covered_by_service:
        return Finding("sender", "ok", f"{number} exists (its incoming messages are the "
                       "Messaging Service's to route)")
    return Finding("sender", "fail", f"{number}'s \"A message comes in\" webhook is "
                   f"{sms_url or 'not set'}, not {inbound}: replies and STOP requests never "
                   "reach smsledger. Console: Phone Numbers > Manage > Active numbers > "
                   f"{number} > Messaging Configuration.")


async def _check_service(client: Any, sid: str, inbound: str, status_url: str,
                         ) -> list[Finding]:
    try:
        service = await client.messaging.v1.services(sid).fetch_async()
    except TwilioException as exc:
        return [Finding("messaging service", "fail",
                        f"TWILIO_MESSAGING_SERVICE_SID {sid}: " + _twilio_said(exc))]
    found = []
    where = f"Console: Messaging > Services > {service.friendly_name} > Integration"
    if service.use_inbound_webhook_on_number:
        found.append(Finding("messaging service", "ok", f"{sid} leaves incoming messages to "
                             "each number's own webhook"))
    elif (service.inbound_request_url or "").rstrip("/") != inbound:
        found.append(Finding("messaging service", "fail", f"{sid} sends incoming messages to "
                             f"{service.inbound_request_url or 'nowhere'}, not {inbound}: "
                             f"replies and STOP requests never reach smsledger. {where}."))
    else:
        found.append(Finding("messaging service", "ok", f"{sid} sends incoming messages to "
                             f"{inbound}"))
    if (service.status_callback or "").rstrip("/") != status_url:
        found.append(Finding("status callback", "fail", f"{sid}'s status callback is "
                             f"{service.status_callback or 'not set'}, not {status_url}: "
                             "messages your own app sends through the service report their "
                             f"delivery nowhere smsledger sees. {where}."))
    else:
        found.append(Finding("status callback", "ok", f"{sid} reports delivery to "
                             f"{status_url}"))
    return found


def check_dashboard(settings: Settings) -> Finding:
    """Whoever reaches the dashboard sees delivery data and (masked) numbers: beyond this
    machine it needs a sign-in."""
    from smsledger.dashboard_cmd import auth_mode

    try:
        mode = auth_mode(settings)
    except SettingsError as exc:
        return Finding("dashboard", "fail", f"the sign-in is half configured: {exc}")
    url = settings.dashboard_url
    if mode == "none":
        if url and not _loopback(url):
            return Finding("dashboard", "fail", f"SMSLEDGER_DASHBOARD_URL is {url} but the "
                           "dashboard has no sign-in: set SMSLEDGER_OIDC_* (your identity "
                           "provider) or SMSLEDGER_DASHBOARD_PASSWORD.")
        return Finding("dashboard", "ok", "no sign-in configured, so `smsledger dashboard` "
                       "listens on 127.0.0.1 only (reach it through an SSH tunnel)")
    how = "your OpenID Connect provider" if mode == "oidc" else "a password"
    if url and urlsplit(url).scheme != "https" and not _loopback(url):
        return Finding("dashboard", "warn", f"sign-in with {how}, but {url} is plain http: "
                       "put the dashboard behind TLS too.")
    return Finding("dashboard", "ok", f"sign-in with {how}")


async def diagnose(settings: Settings) -> list[Finding]:
    """Every check, in the order a person would fix them."""
    parts = await asyncio.gather(check_database(settings), check_public_url(settings),
                                 check_twilio(settings))
    return ([Finding("settings", "ok", "every setting parses")] + [f for p in parts for f in p]
            + [check_dashboard(settings)])


def render(findings: list[Finding]) -> str:
    label = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    width = max(len(f.check) for f in findings)
    lines = [f"  {label[f.level]}  {f.check:<{width}}  {f.text}" for f in findings]
    fails = sum(f.level == "fail" for f in findings)
    warns = sum(f.level == "warn" for f in findings)
    if fails:
        lines.append(f"{fails} problem(s) to fix" + (f", {warns} warning(s)" if warns else ""))
    else:
        lines.append("all good" + (f" ({warns} warning(s))" if warns else ""))
    return "\n".join(lines)


def run_doctor(settings: Settings) -> int:
    findings = asyncio.run(diagnose(settings))
    print(render(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0
