"""``smsledger alerts``: list open (or all) alerts; ``alerts check`` evaluates once.

The open alerts come from the PostgreSQL event log (the truth, even before the next rollup).
``check`` evaluates the rules on the published snapshot (the worker keeps writing its own file
meanwhile), appends what changed, sends the pending notifications once, prints the open alerts
and exits 3 when any is open: a cron line's exit status is the alarm.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from analytics.alerting import AlertsConfig
from analytics.alerts import AlertLog, Transition, load_alert_rules, read_alert_log
from schema import roles
from schema.settings import Settings

EXIT_OPEN = 3


def alerts_config(settings: Settings) -> AlertsConfig:
    """The alert settings, the rules file loaded and checked (raises naming the field)."""
    from analytics.detectors import DETECTORS

    return AlertsConfig(
        rules=load_alert_rules(DETECTORS, settings.alert_rules),
        database_url=settings.database_url,
        webhook_url=settings.alert_webhook_url.reveal(), smtp_url=settings.smtp_url.reveal(),
        ingest_url=settings.ingest_url, metrics_port=settings.worker_metrics_port)


def rows(log: AlertLog, everything: bool) -> list[dict[str, Any]]:
    """One row per alert (open ones, or all), newest first."""
    resolved = {t.alert_id: t for t in log.transitions if t.kind == "resolved"}
    opened = [t for t in log.transitions if t.kind == "opened"]
    out = []
    for t in reversed(opened):
        end: Transition | None = resolved.get(t.alert_id)
        if end is not None and not everything:
            continue
        p = t.payload
        out.append({"alert_id": t.alert_id, "rule": t.rule, "segment": t.segment.label(),
                    "state": "resolved" if end else "open", "opened_at": p["opened_at"],
                    "resolved_at": end.at.isoformat() if end else None,
                    "observed": p["observed"], "baseline": p["baseline"], "sample": p["sample"],
                    "text": p["text"]})
    return out


def render(found: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(found, indent=2)
    if not found:
        return "no alerts"
    lines = [f"{'state':9} {'opened (UTC)':20} {'rule':20} segment / what"]
    for r in found:
        opened = r["opened_at"][:19].replace("T", " ")
        lines.append(f"{r['state']:9} {opened:20} {r['rule']:20} {r['segment']}")
        lines.append(f"{'':51}{r['text']}")
    return "\n".join(lines)


async def list_alerts(settings: Settings, everything: bool, fmt: str) -> int:
    pg = await roles.connect_as(settings.database_url, roles.WORKER_ROLE)
    try:
        log = await read_alert_log(pg)
    finally:
        await pg.close()
    print(render(rows(log, everything), fmt))
    return 0


async def check(settings: Settings, fmt: str) -> int:
    """Evaluate once on the published snapshot, append, notify, print; 3 if any is open."""
    from analytics.alerts import AlertEngine
    from analytics.detectors import shipped
    from analytics.notify import Notifier
    from analytics.snapshot import open_snapshot

    config = alerts_config(settings)
    engine = AlertEngine(config.rules, shipped())
    duck = await asyncio.to_thread(open_snapshot, settings.data_dir)
    pg = await roles.connect_as(settings.database_url, roles.WORKER_ROLE)
    try:
        changed = await engine.evaluate(duck, pg, datetime.now(UTC))
        for e in changed:
            print(f"{e.type}: {e.payload['text']}", file=sys.stderr)
        notifier = Notifier(config)
        if notifier.channels:
            await notifier.send_pending(pg, attempts=3)
        log = await read_alert_log(pg)
    finally:
        await pg.close()
        duck.close()
    found = rows(log, everything=False)
    print(render(found, fmt))
    return EXIT_OPEN if found else 0
