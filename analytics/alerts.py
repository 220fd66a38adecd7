"""Alerts: detectors find incidents in the model, the engine turns them into events.

How it fits together. After every rollup the worker calls :meth:`AlertEngine.evaluate`. The
engine reads which alerts are open from the PostgreSQL event log (``alert.opened`` without its
``alert.resolved``: so the state survives restarts, crashes and model rebuilds), asks each
enabled detector for its observations, applies hysteresis and appends the transitions as
``alert.opened`` / ``alert.resolved`` events. Notifications (``analytics/notify.py``) follow
from the log, not from this code.

Hysteresis without hidden state. A rule's window is evaluated at several ends, ``step_s``
apart (``now``, ``now - step``, ...). An alert opens when the ``open_after`` most recent
windows are all bad, and resolves when the ``resolve_after`` most recent are all good. The
verdicts are recomputed from the model each time, so a restarted worker and a cron
``smsledger alerts check`` reach the same decision as a worker that ran all along. A segment
with no observation at an end (too few messages) counts as good there: no evidence, no alert.
Detectors that only see the present (the ingester's state) observe the newest end only, and
their rules use ``open_after = resolve_after = 1`` with the duration inside the detector.

Adding a detector (e.g. in ``analytics/detectors.py``, or a module of your own):

1. Write a class with ``name`` (the rule name), ``params`` (name -> :class:`Param`: its type
   and bounds, checked when the rules file is loaded) and ``observe(ctx, rule)`` returning
   :class:`Observation` s: one per segment and window end in ``ctx.ends`` (newest first), with
   ``bad`` set, the observed value, the baseline, the sample size and any evidence (JSON-able).
   Read the model through ``ctx.duck`` with SQL from a ``.sql`` file, filtered by the window
   first (``coalesce(sent_at, first_seen_at) >= min(ends) - window``), so that it costs what
   the window costs.
2. Register an instance in ``analytics.detectors.DETECTORS``.
3. Add ``[rules.<name>]`` with ``enabled``, ``window_s``, ``open_after``, ``resolve_after`` and
   the params to ``analytics/alert_rules.toml``, and bump its ``version``.
4. Test: a planted incident opens within two ticks, a near miss does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import duckdb

from analytics.hygiene import RulesError
from schema import store
from schema.events import Event, EventType, alert_transition

log = logging.getLogger("smsledger.analytics.alerts")

# A rule's common fields; each detector declares the rest.
COMMON_FIELDS = ("enabled", "window_s", "open_after", "resolve_after")


class AlertRulesError(RulesError):
    """The alert rules file is wrong; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One threshold of a rule: its type and bounds."""
    kind: type                       # int, float, bool, str, or list (of ints)
    help: str
    minimum: float | None = None
    maximum: float | None = None

    def check(self, where: str, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise AlertRulesError(f"{where} must be true or false, not {value!r}")
            return value
        if self.kind is list:
            if not isinstance(value, list) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise AlertRulesError(f"{where} must be a list of whole numbers, not {value!r}")
            return tuple(value)
        if self.kind is str:
            if not isinstance(value, str):
                raise AlertRulesError(f"{where} must be a string, not {value!r}")
            return value
        numeric = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            kind = "a whole number" if self.kind is int else "a number"
            raise AlertRulesError(f"{where} must be {kind}, not {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise AlertRulesError(f"{where} must be >= {self.minimum}, not {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise AlertRulesError(f"{where} must be <= {self.maximum}, not {value!r}")
        return self.kind(value)


@dataclasses.dataclass(frozen=True)
class Segment:
    """Where an incident is: any of carrier, country, sender and number prefix (None: all);
    ``code`` tells apart alerts of one rule on one segment (an error code, "spool", "403")."""
    carrier: str | None = None
    country: str | None = None
    sender: str | None = None
    prefix: str | None = None
    code: str | None = None

    def key(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name) or '*'}"
                        for f in dataclasses.fields(self))

    def as_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        parts = [f"{f.name} {getattr(self, f.name)}" for f in dataclasses.fields(self)
                 if getattr(self, f.name)]
        return ", ".join(parts) or "all traffic"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Segment:
        return cls(**{f.name: raw.get(f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Observation:
    """What a detector saw for one segment in the window ending at ``end``."""
    segment: Segment
    end: datetime
    bad: bool
    observed: float | None
    baseline: float | None
    sample: int
    text: str                                   # one line, for people ("delivery 41% ...")
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    enabled: bool
    window_s: float
    open_after: int
    resolve_after: int
    params: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


@dataclasses.dataclass(frozen=True)
class IngestStatus:
    """What the worker learnt from the ingester (``SMSLEDGER_INGEST_URL``): None if unknown."""
    reachable: bool
    degraded: bool = False
    spool_depth: int = 0
    rejects: Mapping[str, float] = dataclasses.field(default_factory=dict)
    appended: float = 0.0


@dataclasses.dataclass
class Context:
    duck: duckdb.DuckDBPyConnection
    now: datetime
    ends: Sequence[datetime]                    # newest first, step_s apart
    ingest: IngestStatus | None = None


class Detector(Protocol):
    name: str
    params: Mapping[str, Param]

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]: ...


@dataclasses.dataclass(frozen=True)
class AlertRules:
    version: str
    step_s: float
    rules: Mapping[str, Rule]


_COMMON = {
    "enabled": Param(bool, "evaluate this rule"),
    "window_s": Param(float, "seconds of traffic one verdict looks at", 1, 30 * 86400),
    "open_after": Param(int, "consecutive bad windows before the alert opens", 1, 100),
    "resolve_after": Param(int, "consecutive good windows before it resolves", 1, 100),
}


def load_alert_rules(detectors: Mapping[str, type[Detector]], path: Path | None = None,
                     ) -> AlertRules:
    """The shipped rules, or the TOML file at ``path``: every rule names a known detector,
    every field is known and within bounds; anything else raises, naming the field."""
    if path is None:
        text = resources.files("analytics").joinpath("alert_rules.toml").read_text("utf-8")
        where = "the shipped alert_rules.toml"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AlertRulesError(f"cannot read alert rules {path}: {exc.strerror}") from None
        where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AlertRulesError(f"{where}: {exc}") from None
    unknown = sorted(set(raw) - {"version", "step_s", "rules"})
    if unknown:
        raise AlertRulesError(f"{where}: unknown field {unknown[0]!r}")
    version = raw.get("version")
    if not isinstance(version, str) or not version:
        raise AlertRulesError(f"{where}: version must be a non-empty string")
    step_s = Param(float, "", 1, 86400).check(f"{where}: step_s", raw.get("step_s", 60))
    sections = raw.get("rules", {})
    if not isinstance(sections, dict):
        raise AlertRulesError(f"{where}: rules must be a table of [rules.NAME] sections")
    rules: dict[str, Rule] = {}
    for name, section in sections.items():
        if name not in detectors:
            raise AlertRulesError(f"{where}: unknown rule rules.{name} (known: "
                                  f"{', '.join(sorted(detectors))})")
        if not isinstance(section, dict):
            raise AlertRulesError(f"{where}: rules.{name} must be a table")
        spec = {**_COMMON, **detectors[name].params}
        extra = sorted(set(section) - set(spec))
        if extra:
            raise AlertRulesError(f"{where}: unknown field rules.{name}.{extra[0]}")
        missing = sorted(set(spec) - set(section))
        if missing:
            raise AlertRulesError(f"{where}: missing field rules.{name}.{missing[0]}")
        values = {k: p.check(f"{where}: rules.{name}.{k}", section[k]) for k, p in spec.items()}
        rules[name] = Rule(name=name, enabled=values.pop("enabled"),
                           window_s=values.pop("window_s"), open_after=values.pop("open_after"),
                           resolve_after=values.pop("resolve_after"), params=values)
    return AlertRules(version=version, step_s=step_s, rules=rules)


# -- the state, derived from the log ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Transition:
    """One ``alert.opened`` or ``alert.resolved`` as stored."""
    key: str                 # its idempotency key: the notification's dedupe id
    kind: str                # "opened" or "resolved"
    alert_id: str
    rule: str
    segment: Segment
    at: datetime             # when it was appended
    payload: Mapping[str, Any]


@dataclasses.dataclass
class AlertLog:
    """The alert events folded: open alerts by (rule, segment key), how many times each pair
    has opened (the next alert id), every transition, and which were notified where."""
    open: dict[tuple[str, str], Transition] = dataclasses.field(default_factory=dict)
    openings: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    transitions: list[Transition] = dataclasses.field(default_factory=list)
    notified: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (channel, key)

    def fold(self, kind: str, key: str, at: datetime, payload: Mapping[str, Any]) -> None:
        if kind == EventType.ALERT_NOTIFIED:
            self.notified.add((payload["channel"], payload["transition"]))
            return
        segment = Segment.from_dict(payload.get("segment", {}))
        pair = (payload["rule"], segment.key())
        t = Transition(key=key, kind=kind.removeprefix("alert."), alert_id=payload["alert_id"],
                       rule=payload["rule"], segment=segment, at=at, payload=payload)
        self.transitions.append(t)
        if kind == EventType.ALERT_OPENED:
            self.openings[pair] = self.openings.get(pair, 0) + 1
            self.open[pair] = t
        elif kind == EventType.ALERT_RESOLVED:
            opened = self.open.get(pair)
            if opened is not None and opened.alert_id == payload["alert_id"]:
                del self.open[pair]


async def read_alert_log(pg: asyncpg.Connection,
                         since: datetime = datetime(1970, 1, 1, tzinfo=UTC)) -> AlertLog:
    """Fold the alert events (``schema/sql/alert_log.sql``; a partial index serves it)."""
    folded = AlertLog()
    for row in await pg.fetch(store.sql("alert_log"), since):
        folded.fold(row["type"], row["idempotency_key"], row["received_at"],
                    json.loads(row["payload"]))
    return folded


# -- the engine ---------------------------------------------------------------------------------

def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def _run(at_end: Mapping[datetime, Observation], ends: Sequence[datetime], *, bad: bool) -> bool:
    """Every one of ``ends`` bad (``bad``), or every one good; no observation counts as good."""
    if bad:
        return all(at_end.get(e) is not None and at_end[e].bad for e in ends)
    return all(at_end.get(e) is None or not at_end[e].bad for e in ends)


class AlertEngine:
    """Runs the detectors, applies hysteresis, appends the transitions."""

    def __init__(self, rules: AlertRules, detectors: Mapping[str, Detector]) -> None:
        self.rules = rules
        self.detectors = detectors
        self._failing: set[str] = set()   # rules whose detector raised: logged once a streak

    def ends(self, rule: Rule, now: datetime) -> list[datetime]:
        count = max(rule.open_after, rule.resolve_after)
        return [now - timedelta(seconds=self.rules.step_s * i) for i in range(count)]

    def observe(self, duck: duckdb.DuckDBPyConnection, now: datetime,
                ingest: IngestStatus | None = None) -> dict[str, list[Observation]]:
        """Every enabled rule's observations (a detector that raises is logged and skipped:
        one broken rule must not silence the others or stop the worker)."""
        seen: dict[str, list[Observation]] = {}
        for rule in self.rules.rules.values():
            if not rule.enabled:
                continue
            ctx = Context(duck=duck, now=now, ends=self.ends(rule, now), ingest=ingest)
            try:
                seen[rule.name] = list(self.detectors[rule.name].observe(ctx, rule))
            except (duckdb.Error, ValueError, KeyError, TypeError) as exc:
                if rule.name not in self._failing:
                    log.error("alert rule %s failed: %s", rule.name, exc)
                self._failing.add(rule.name)
                continue
            self._failing.discard(rule.name)
        return seen

    def decide(self, state: AlertLog, seen: Mapping[str, list[Observation]],
               now: datetime) -> list[Event]:
        """The transitions ``seen`` calls for, given the open alerts in ``state``."""
        out: list[Event] = []
        for name, observations in seen.items():
            rule = self.rules.rules[name]
            ends = self.ends(rule, now)
            by_segment: dict[str, dict[datetime, Observation]] = {}
            for o in observations:
                by_segment.setdefault(o.segment.key(), {})[o.end] = o
            latest: dict[str, Observation] = {}
            for key, at_end in by_segment.items():
                newest = max(at_end)
                latest[key] = at_end[newest]

            for key, newest_obs in latest.items():
                pair = (name, key)
                if pair in state.open or not _run(by_segment.get(key, {}), ends[:rule.open_after],
                                                   bad=True):
                    continue
                n = state.openings.get(pair, 0) + 1
                out.append(self._event(EventType.ALERT_OPENED, f"{name}|{key}|{n}", rule,
                                       newest_obs, None))
            for (rule_name, key), opened in state.open.items():
                if rule_name != name or not _run(by_segment.get(key, {}),
                                                 ends[:rule.resolve_after], bad=False):
                    continue
                newest_obs = latest.get(key) or Observation(
                    segment=opened.segment, end=ends[0], bad=False, observed=None,
                    baseline=opened.payload.get("baseline"), sample=0,
                    text=f"{name} for {opened.segment.label()}: no longer observed")
                out.append(self._event(EventType.ALERT_RESOLVED, opened.alert_id, rule,
                                       newest_obs, opened))
        return out

    def _event(self, kind: EventType, alert_id: str, rule: Rule, o: Observation,
               opened: Transition | None) -> Event:
        opened_at = (datetime.fromisoformat(opened.payload["opened_at"]) if opened is not None
                     else None)
        return alert_transition(
            kind, alert_id=alert_id, rule=rule.name, segment=o.segment.as_dict(),
            window_s=rule.window_s, window_end=o.end, observed=_round(o.observed),
            baseline=_round(o.baseline), sample=o.sample,
            evidence={**o.evidence, "rules_version": self.rules.version}, text=o.text,
            opened_at=opened_at)

    async def evaluate(self, duck: duckdb.DuckDBPyConnection, pg: asyncpg.Connection,
                       now: datetime | None = None, ingest: IngestStatus | None = None,
                       ) -> list[Event]:
        """One evaluation: observe, decide against the log, append; return what was new."""
        now = now or datetime.now(UTC)
        # In a thread: the detectors' queries take tens of milliseconds, and the notifier and
        # the worker's signal handling share this event loop (DuckDB releases the GIL).
        seen = await asyncio.to_thread(self.observe, duck, now, ingest)
        state = await read_alert_log(pg)
        changes = self.decide(state, seen, now)
        if not changes:
            return []
        new = await store.append(pg, changes)
        for e in changes:
            if e.idempotency_key in new:
                log.warning("%s: %s", e.type, e.payload["text"])
        return [e for e in changes if e.idempotency_key in new]
