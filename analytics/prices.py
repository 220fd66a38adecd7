"""The price table (``prices.toml``): what a message is estimated to cost until Twilio's final
price arrives. Versioned configuration, like the hygiene rules; ``SMSLEDGER_PRICES`` names a
file that replaces the shipped one."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any


class PricesError(ValueError):
    """The price file is unreadable or malformed; the message names the key."""


@dataclasses.dataclass(frozen=True)
class CountryPrice:
    sms: float          # per outbound segment
    mms: float          # per outbound MMS message; 0: not offered (priced as SMS)
    inbound: float      # per inbound segment


@dataclasses.dataclass(frozen=True)
class PriceTable:
    version: str
    currency: str
    verify_per_verification: float
    failed_fee: float
    failed_fee_since: date
    failed_fee_exempt: tuple[int, ...]
    countries: dict[str, CountryPrice]

    def country(self, code: str | None) -> CountryPrice:
        return self.countries.get(code or "", self.countries["default"])

    def sql_params(self) -> dict[str, Any]:
        """The table as DuckDB parameters: a list of structs and scalars (cost.sql)."""
        return {
            "price_rows": [{"country": c, "sms": p.sms, "mms": p.mms, "inbound": p.inbound}
                           for c, p in self.countries.items()],
            "failed_fee": self.failed_fee,
            "failed_fee_since": self.failed_fee_since,
            "failed_fee_exempt": list(self.failed_fee_exempt),
            "verify_fee": self.verify_per_verification,
        }


_TOP = {"version", "currency", "verify_per_verification", "failed_fee", "failed_fee_since",
        "failed_fee_exempt", "countries"}


def _amount(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PricesError(f"{where}: {name} must be a number >= 0, not {value!r}")
    return float(value)


def load_prices(path: Path | None = None) -> PriceTable:
    """The shipped table, or the TOML file at ``path`` (every key required, checked)."""
    if path is None:
        text = resources.files("analytics").joinpath("prices.toml").read_text("utf-8")
        where = "the shipped prices.toml"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PricesError(f"cannot read the price table {path}: {exc.strerror}") from None
        where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"{where}: {exc}") from None
    missing, unknown = sorted(_TOP - set(raw)), sorted(set(raw) - _TOP)
    if missing or unknown:
        raise PricesError(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'none'}")
    if not isinstance(raw["version"], str) or not raw["version"]:
        raise PricesError(f"{where}: version must be a non-empty string")
    if not isinstance(raw["currency"], str) or len(raw["currency"]) != 3:
        raise PricesError(f"{where}: currency must be a 3-letter code such as USD")
    if not isinstance(raw["failed_fee_since"], date):
        raise PricesError(f"{where}: failed_fee_since must be a date (YYYY-MM-DD)")
    exempt = raw["failed_fee_exempt"]
    if not isinstance(exempt, list) or not all(isinstance(c, int) for c in exempt):
        raise PricesError(f"{where}: failed_fee_exempt must be a list of error codes")
    countries: dict[str, CountryPrice] = {}
    table = raw["countries"]
    if not isinstance(table, dict) or "default" not in table:
        raise PricesError(f"{where}: [countries.default] is required (it prices a country "
                          "not listed)")
    for code, row in table.items():
        if not isinstance(row, dict) or set(row) != {"sms", "mms", "inbound"}:
            raise PricesError(f"{where}: countries.{code} needs exactly sms, mms and inbound")
        countries[code] = CountryPrice(*(_amount(where, f"countries.{code}.{k}", row[k])
                                         for k in ("sms", "mms", "inbound")))
    return PriceTable(
        version=raw["version"], currency=raw["currency"].upper(),
        verify_per_verification=_amount(where, "verify_per_verification",
                                        raw["verify_per_verification"]),
        failed_fee=_amount(where, "failed_fee", raw["failed_fee"]),
        failed_fee_since=raw["failed_fee_since"], failed_fee_exempt=tuple(exempt),
        countries=countries)
