"""Alert notifications: one message per ``alert.opened`` / ``alert.resolved``, per channel.

What is pending is derived from the log: a transition with no ``alert.notified`` for that
channel. The ``alert.notified`` event is appended only after the receiver accepted (a 2xx, or
the SMTP server's final 250), so a worker killed (kill -9 included) between the two sends that
notification again after its restart. The guarantee is therefore **at least once**, and
exactly once whenever the worker is not killed in the instant between the receiver's answer
and that append: every message carries ``id`` (the transition's idempotency key, also sent as
the ``Idempotency-Key`` header), the same on every attempt, so a receiver can drop a repeat.

A receiver that is down or slow is retried with exponential backoff (1 s doubling to 5 min),
logged once per failure streak, in a background task of the worker: the rollup never waits for
it. Transitions older than ``MAX_AGE`` are not sent (configuring a webhook does not replay
last month's alerts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import smtplib
import ssl
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import asyncpg

from analytics.alerting import AlertsConfig
from analytics.alerts import Transition, read_alert_log
from schema import roles, store
from schema.events import alert_notified

log = logging.getLogger("smsledger.analytics.notify")

MAX_AGE = timedelta(days=1)
BACKOFF_MAX_S = 300.0
POLL_S = 30.0


class DeliveryFailed(Exception):
    """The receiver did not accept; the message says why (no secrets)."""


def message(t: Transition, opened_at: str | None) -> dict[str, Any]:
    """The JSON body: the issue's fields, Slack's ``text``, and ``id`` for deduplication."""
    p = t.payload
    verb = "OPEN" if t.kind == "opened" else "RESOLVED"
    return {"id": t.key, "event": t.kind, "alert_id": t.alert_id, "rule": t.rule,
            "segment": {k: v for k, v in t.segment.as_dict().items()},
            "observed": p.get("observed"), "baseline": p.get("baseline"),
            "sample": p.get("sample"), "window_s": p.get("window_s"),
            "opened_at": opened_at or p.get("opened_at"),
            "resolved_at": t.at.isoformat() if t.kind == "resolved" else None,
            "evidence": p.get("evidence", {}),
            "text": f"[smsledger] {verb} {t.rule}: {p.get('text', '')}"}


class Channel(Protocol):
    name: str

    async def send(self, body: dict[str, Any]) -> str: ...


@dataclasses.dataclass
class Webhook:
    url: str
    timeout_s: float = 10.0
    name: str = "webhook"

    async def send(self, body: dict[str, Any]) -> str:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                    self.url, json=body, headers={"Idempotency-Key": body["id"]}) as resp:
                if 200 <= resp.status < 300:
                    return f"HTTP {resp.status}"
                raise DeliveryFailed(f"HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(type(exc).__name__) from None


@dataclasses.dataclass
class Email:
    """``smtp://[user:password@]host[:port]?from=A&to=B,C`` (``smtps://``: TLS from the start;
    ``starttls=1``: upgrade a plain connection)."""
    url: str
    timeout_s: float = 10.0
    name: str = "email"

    def _send(self, body: dict[str, Any]) -> str:
        parts = urlsplit(self.url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        mail = EmailMessage()
        mail["From"] = query["from"]
        mail["To"] = query["to"]
        mail["Subject"] = body["text"][:200]
        mail["Message-ID"] = f"<{body['id'].replace(':', '.').replace('|', '.')}@smsledger>"
        lines = [body["text"], "", f"rule: {body['rule']}", f"segment: {body['segment']}",
                 f"observed: {body['observed']}  baseline: {body['baseline']}  "
                 f"sample: {body['sample']}", f"opened at: {body['opened_at']}",
                 f"resolved at: {body['resolved_at'] or '-'}", f"id: {body['id']}"]
        mail.set_content("\n".join(lines))
        host, port = parts.hostname or "localhost", parts.port
        try:
            if parts.scheme == "smtps":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port or 465, timeout=self.timeout_s,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(host, port or 25, timeout=self.timeout_s)
            with smtp:
                if query.get("starttls") == "1":
                    smtp.starttls(context=ssl.create_default_context())
                if parts.username:
                    smtp.login(unquote(parts.username), unquote(parts.password or ""))
                smtp.send_message(mail, to_addrs=query["to"].split(","))
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(type(exc).__name__) from None
        return "250"

    async def send(self, body: dict[str, Any]) -> str:
        return await asyncio.to_thread(self._send, body)


class Notifier:
    def __init__(self, config: AlertsConfig) -> None:
        self.channels: list[Channel] = []
        if config.webhook_url:
            self.channels.append(Webhook(config.webhook_url))
        if config.smtp_url:
            self.channels.append(Email(config.smtp_url))
        self.database_url = config.database_url
        self.wake = asyncio.Event()
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}

    async def send_pending(self, pg: asyncpg.Connection, attempts: int = 1) -> int:
        """Send every pending transition on every channel not in backoff; return how many
        were accepted. ``attempts`` > 1 retries at once with backoff (the CLI's one shot)."""
        horizon = datetime.now(UTC) - MAX_AGE
        state = await read_alert_log(pg, horizon)
        opened_at = {t.alert_id: t.payload.get("opened_at") for t in state.transitions
                     if t.kind == "opened"}
        sent = 0
        for channel in self.channels:
            if time.monotonic() < self._retry_at.get(channel.name, 0.0):
                continue
            for t in state.transitions:
                if t.at < horizon or (channel.name, t.key) in state.notified:
                    continue
                body = message(t, opened_at.get(t.alert_id))
                answer = await self._attempt(channel, body, attempts)
                if answer is None:
                    break          # this channel is down: the rest wait for its backoff
                await store.append(pg, [alert_notified(
                    transition_key=t.key, channel=channel.name, alert_id=t.alert_id,
                    answer=answer)])
                sent += 1
        return sent

    async def _attempt(self, channel: Channel, body: dict[str, Any], attempts: int,
                       ) -> str | None:
        for attempt in range(attempts):
            try:
                answer = await channel.send(body)
            except DeliveryFailed as exc:
                failures = self._failures.get(channel.name, 0) + 1
                self._failures[channel.name] = failures
                delay = min(BACKOFF_MAX_S, 2.0 ** (failures - 1))
                self._retry_at[channel.name] = time.monotonic() + delay
                if failures == 1:
                    log.warning("alert %s notification failed (%s); retrying with backoff",
                                channel.name, exc)
                if attempt + 1 < attempts:
                    await asyncio.sleep(min(delay, 5.0))
                continue
            if self._failures.pop(channel.name, 0):
                log.info("alert %s notifications delivered again", channel.name)
            self._retry_at.pop(channel.name, None)
            return answer
        return None

    async def run(self) -> None:
        """The background task: send what is pending now (after a restart too), then whenever
        woken (a new transition), at the end of a backoff, or every ``POLL_S``."""
        pg: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    if pg is None or pg.is_closed():
                        # The worker's least-privileged role, as its other connection.
                        pg = await roles.connect_as(self.database_url, roles.WORKER_ROLE)
                    await self.send_pending(pg)
                    self._retry_at.pop("database", None)
                except (asyncpg.PostgresError, OSError, roles.RoleMissing) as exc:
                    log.warning("alert notifier cannot reach the log: %s", type(exc).__name__)
                    if pg is not None:
                        pg.terminate()
                    pg = None
                    self._retry_at["database"] = time.monotonic() + 5.0
                now = time.monotonic()
                waits = [r - now for r in self._retry_at.values() if r > now]
                timeout = max(0.05, min([POLL_S, *waits]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
                self.wake.clear()
        finally:
            if pg is not None:
                await pg.close()
