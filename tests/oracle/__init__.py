"""The test oracle: the dashboard's and the hygiene report's figures computed again, in SQL of
its own (``oracle.sql``), straight from PostgreSQL's event log.

Written from the README's rules, the Twilio facts and the hygiene rules file read as data — not
from ``analytics/`` — so that a test comparing the two can catch a wrong number in either.
The only reference data it takes from outside the log: each number's country and carrier hint
by phonenumbers' public API (the README's documented source), the error-code catalogue
(``schema/data/error_codes.csv``) and the rules file (``analytics/hygiene_rules.toml``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import phonenumbers
from phonenumbers import carrier as pn_carrier

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "analytics" / "hygiene_rules.toml"
ERROR_CODES = ROOT / "schema" / "data" / "error_codes.csv"


def _queries() -> dict[str, str]:
    text = (Path(__file__).parent / "oracle.sql").read_text()
    parts = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


QUERIES = _queries()
DIMENSIONS = ("day", "hourly", "carrier", "country", "sender", "category")


def phone_facts(phone: str) -> tuple[str | None, str | None]:
    """(country, carrier hint) of a number by phonenumbers' public API: the region of a valid
    number, and the carrier name it knows for a mobile one."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None, None
    if not phonenumbers.is_valid_number(number):
        return None, None
    return (phonenumbers.region_code_for_number(number),
            pn_carrier.name_for_number(number, "en") or None)


def _reference_files(rules: Path) -> tuple[list[tuple[int, str, str]], dict[str, Any]]:
    """The error-code catalogue's rows and the rules file, read as data."""
    with ERROR_CODES.open(newline="") as f:
        codes = [(int(r["code"]), r["meaning"], r["class"]) for r in csv.DictReader(f)]
    return codes, tomllib.loads(rules.read_text())


@dataclasses.dataclass(frozen=True)
class Filter:
    start: datetime | None = None
    end: datetime | None = None
    sender: str | None = None
    category: str | None = None
    country: str | None = None


class Oracle:
    """The reference figures over one PostgreSQL connection (session-local tables only)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, conn: asyncpg.Connection, rules: Path = RULES) -> Oracle:
        await conn.execute(QUERIES["setup"])
        phones = await conn.fetch("SELECT DISTINCT phone FROM events WHERE phone IS NOT NULL")
        await conn.executemany("INSERT INTO oracle_phones VALUES ($1, $2, $3)",
                               [(r["phone"], *phone_facts(r["phone"])) for r in phones])
        codes, data = _reference_files(rules)
        await conn.executemany("INSERT INTO oracle_error_codes VALUES ($1, $2, $3)", codes)
        await conn.executemany("INSERT INTO oracle_rules VALUES ($1, $2)", [
            (kind, code) for kind in ("permanent", "opt_out", "unreachable", "blocked")
            for code in data[f"{kind}_codes"]])
        await conn.execute("INSERT INTO oracle_settings VALUES ($1, $2)",
                           data["unreachable_min_failures"], data["unreachable_min_days"])
        return cls(conn)

    async def _filter(self, f: Filter) -> None:
        await self.conn.execute("TRUNCATE oracle_filtered")
        await self.conn.execute(QUERIES["filtered"], f.start, f.end, f.sender, f.category,
                                f.country)

    async def _rows(self, name: str, f: Filter, *args: Any) -> list[dict[str, Any]]:
        await self._filter(f)
        return [dict(r) for r in await self.conn.fetch(QUERIES[name], *args)]

    async def overview(self, f: Filter = Filter()) -> dict[str, Any]:
        return (await self._rows("overview", f))[0]

    async def delivery_by(self, dim: str, f: Filter = Filter()) -> dict[str, dict[str, Any]]:
        """{dimension value (days as YYYY-MM-DD, hours as YYYY-MM-DD HH): figures}."""
        assert dim in DIMENSIONS, dim
        return {r.pop("dim"): r for r in await self._rows("delivery_by", f, dim)}

    async def status_funnel(self, f: Filter = Filter()) -> dict[str, int]:
        return (await self._rows("status_funnel", f))[0]

    async def error_breakdown(self, f: Filter = Filter()) -> dict[int, dict[str, Any]]:
        rows = await self._rows("error_breakdown", f)
        return {r.pop("error_code"): {**r, "carriers": set(r["carriers"]),
                                      "countries": set(r["countries"])} for r in rows}

    async def error_trend(self, f: Filter = Filter()) -> dict[tuple[str, int], int]:
        return {(r["day"], r["error_code"]): r["messages"]
                for r in await self._rows("error_trend", f)}

    async def otp_latency(self, by: str | None = None, f: Filter = Filter(),
                          ) -> dict[str, dict[str, Any]]:
        return {r.pop("dim"): r for r in await self._rows("otp_latency", f, by)}

    async def otp_latencies(self, f: Filter = Filter()) -> list[float]:
        return sorted(r["latency_s"] for r in await self._rows("otp_latencies", f))

    async def verify(self) -> dict[str, int]:
        return dict(await self.conn.fetchrow(QUERIES["verify"]))

    async def opt_outs(self) -> dict[tuple[str, str, str], int]:
        return {(r["day"], r["kind"], r["keyword"]): r["events"]
                for r in await self.conn.fetch(QUERIES["opt_outs"])}

    async def hygiene(self) -> dict[str, dict[str, Any]]:
        """{phone: verdict and evidence} for every number the log knows, 'ok' included."""
        out = {}
        for r in await self.conn.fetch(QUERIES["hygiene"]):
            row = dict(r)
            row["error_codes"] = {int(k): v for k, v in json.loads(row["error_codes"]).items()}
            out[row.pop("phone")] = row
        return out

    async def timeline(self, key: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.conn.fetch(QUERIES["timeline"], key)]
