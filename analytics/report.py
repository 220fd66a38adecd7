"""The list-hygiene report: which numbers to stop texting, why, and what to do.

Writes a CSV (one row per flagged number with its evidence) and an HTML summary under
``$SMSLEDGER_DATA_DIR/reports``, appends ``contact.suppressed`` for new removals so the send
path refuses them (the loop closes through the event log), and optionally posts a JSON summary.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import duckdb
import jinja2

from analytics import queries
from analytics.hygiene import HygieneRules
from schema import store
from schema.events import EventType, Source, suppression
from schema.private_files import open_private, private_dir, write_private

log = logging.getLogger("smsledger.analytics.report")

COLUMNS = ["phone", "verdict", "reason", "error_codes", "sends", "deliveries", "failures",
           "consecutive_failures", "first_failure_at", "last_failure_at", "last_delivered_at",
           "country", "carrier", "line_type", "recommended_action", "rules_version"]
# The HTML is the summary a person reads: the evidence, without the enrichment and the rules
# version that the CSV carries for tools.
HTML_COLUMNS = ["phone", "verdict", "reason", "error_codes", "sends", "deliveries", "failures",
                "consecutive_failures", "first_failure_at", "last_failure_at",
                "last_delivered_at", "country"]
# Verdicts that suppress the number (opt-outs already block sends on their own).
SUPPRESS = ("remove", "unreachable", "blocked")


@dataclasses.dataclass
class HygieneReport:
    csv_path: Path
    html_path: Path
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    suppressed_now: int
    rules_version: str
    generated_at: datetime

    def summary(self) -> dict[str, Any]:
        return {"report": "hygiene", "generated_at": self.generated_at.isoformat(),
                "rules_version": self.rules_version, "flagged": len(self.rows),
                "by_verdict": self.counts, "suppressed_now": self.suppressed_now,
                "csv": str(self.csv_path), "html": str(self.html_path)}


def flagged(con: duckdb.DuckDBPyConnection, rules: HygieneRules) -> list[dict[str, Any]]:
    cur = queries.prepare(con).execute(queries.sql("hygiene_flagged"))
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for row in rows:
        row["rules_version"] = rules.version
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "" if value is None else str(value)


class ReportRefused(PermissionError):
    """The report cannot be written where asked; the message says why. (An OSError: the
    worker logs it and goes on, as for a full disk.)"""


def refuse_symlinks(*paths: Path) -> None:
    """A report holds whole phone numbers: it is not written through a symbolic link that
    someone else may have planted where it goes (the directory or any of its files)."""
    for path in paths:
        if path.is_symlink():
            raise ReportRefused(f"{path} is a symbolic link; refusing to write a report "
                                "through it (remove it, or choose another --out)")


def write_files(rows: list[dict[str, Any]], counts: dict[str, int], out_dir: Path,
                rules: HygieneRules, now: datetime) -> tuple[Path, Path]:
    refuse_symlinks(out_dir)
    private_dir(out_dir)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    csv_path, html_path = out_dir / f"hygiene-{stamp}.csv", out_dir / f"hygiene-{stamp}.html"
    refuse_symlinks(csv_path, html_path, out_dir / "hygiene-latest.csv",
                    out_dir / "hygiene-latest.html")
    with os.fdopen(open_private(csv_path), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in COLUMNS])
    write_private(html_path, _template().render(
        generated_at=_cell(now), rules_version=rules.version, counts=sorted(counts.items()),
        columns=HTML_COLUMNS, rows=[[_cell(row.get(c)) for c in HTML_COLUMNS] for row in rows],
    ).encode("utf-8"))
    for path, latest in ((csv_path, "hygiene-latest.csv"), (html_path, "hygiene-latest.html")):
        write_private(out_dir / latest, path.read_bytes())
    return csv_path, html_path


@cache
def _template() -> jinja2.Template:
    """analytics/templates/hygiene.html; every value escaped (numbers' reasons come from
    carrier error text and rules files)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("analytics", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("hygiene.html")


async def suppress_new(pg: asyncpg.Connection, rows: list[dict[str, Any]],
                       rules: HygieneRules) -> int:
    """``contact.suppressed`` for each flagged number not yet suppressed. The key names the
    rules version, the verdict and the latest failure: the same evidence suppresses once."""
    events = [suppression(
        EventType.CONTACT_SUPPRESSED, phone=row["phone"], reason=row["reason"],
        source=Source.ANALYTICS,
        key_suffix=f"hygiene:{rules.version}:{row['verdict']}:{_cell(row['last_failure_at'])}",
        evidence={"verdict": row["verdict"], "error_codes": row["error_codes"],
                  "failures": row["failures"], "rules_version": rules.version})
        for row in rows if row["verdict"] in SUPPRESS and not row["suppressed"]]
    return len(await store.append(pg, events))


async def notify(url: str, summary: dict[str, Any]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.post(url, json=summary) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"the notify URL answered {resp.status}")


async def hygiene_report(con: duckdb.DuckDBPyConnection, pg: asyncpg.Connection,
                         rules: HygieneRules, out_dir: Path, notify_url: str = "",
                         ) -> HygieneReport:
    now = datetime.now(UTC)
    rows = flagged(con, rules)
    counts = dict(Counter(row["verdict"] for row in rows))
    csv_path, html_path = write_files(rows, counts, out_dir, rules, now)
    suppressed = await suppress_new(pg, rows, rules)
    report = HygieneReport(csv_path, html_path, rows, counts, suppressed, rules.version, now)
    if notify_url:
        await notify(notify_url, report.summary())
    log.info("hygiene report: %s", json.dumps(report.summary()))
    return report
