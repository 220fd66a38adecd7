"""List-hygiene rules, kept as versioned configuration (``hygiene_rules.toml``)."""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any


class RulesError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class HygieneRules:
    version: str
    permanent_codes: tuple[int, ...]
    opt_out_codes: tuple[int, ...]
    unreachable_codes: tuple[int, ...]
    unreachable_min_failures: int
    unreachable_min_days: int
    blocked_codes: tuple[int, ...]

    def sql_params(self) -> dict[str, Any]:
        return {"permanent_codes": list(self.permanent_codes),
                "opt_out_codes": list(self.opt_out_codes),
                "unreachable_codes": list(self.unreachable_codes),
                "unreachable_min_failures": self.unreachable_min_failures,
                "unreachable_min_days": self.unreachable_min_days,
                "blocked_codes": list(self.blocked_codes)}


def load_rules(path: Path | None = None) -> HygieneRules:
    """The shipped rules, or the TOML file at ``path`` (every key required, checked)."""
    if path is None:
        text = resources.files("analytics").joinpath("hygiene_rules.toml").read_text("utf-8")
        where = "the shipped hygiene_rules.toml"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read hygiene rules {path}: {exc.strerror}") from None
        where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: {exc}") from None
    fields = {f.name: f.type for f in dataclasses.fields(HygieneRules)}
    missing = sorted(set(fields) - set(raw))
    unknown = sorted(set(raw) - set(fields))
    if missing or unknown:
        raise RulesError(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'none'}")
    values: dict[str, Any] = {}
    for name in fields:
        value = raw[name]
        if name == "version":
            if not isinstance(value, str) or not value:
                raise RulesError(f"{where}: version must be a non-empty string")
        elif name.endswith("_codes"):
            if not isinstance(value, list) or not all(isinstance(c, int) for c in value):
                raise RulesError(f"{where}: {name} must be a list of error codes")
            value = tuple(value)
        elif not isinstance(value, int) or value < 1:
            raise RulesError(f"{where}: {name} must be a whole number >= 1")
        values[name] = value
    return HygieneRules(**values)
