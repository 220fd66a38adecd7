"""SMS pumping (artificially inflated traffic) caught from your own traffic: the ``pumping``
alert rule, a detector of the alerts mechanism (``analytics/alerts.py``).

An attacker makes a site send OTP codes to numbers in a block it gets paid for. What gives it
away, per country and number prefix (the E.164 number without its last 4 digits), in the
rule's window:

- **conversion collapse**: OTP sends and Verify starts that are almost never approved, against
  the country's own conversion over the baseline period. Even the upper Wilson bound of the
  window's conversion is below ``collapse_ratio`` of the baseline;
- **a prefix never seen before** (no message, no Verify start over ``lookback_s``) whose
  conversion, by its upper bound, is below ``new_prefix_ratio`` of the baseline (a looser bar
  than the collapse: new prefixes are where attacks start);
- **runs of sequential numbers** (``min_run`` consecutive numbers texted in one window);
- **Twilio's own blocks**: 30450/30453 (SMS Pumping Protection), 60410 (Verify Fraud Guard).

A prefix needs ``min_sends`` in the window before any signal counts, and when the account's
conversion is unknown (no Verify and no OTP confirmations: the baseline under
``min_baseline_conversion``) the conversion signals stay silent rather than guess. Every
alert names the signals that fired and their figures: the guard that refuses sends
(``SMSLEDGER_FRAUD_GUARD``) shows them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analytics.alerts import Context, Observation, Param, Rule, Segment
from schema.named_sql import named

RULE = "pumping"


def _queries() -> Mapping[str, str]:
    return named("analytics", "sql/pumping.sql")


def query(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> list[dict[str, Any]]:
    cur = con.execute(_queries()[name], params)
    columns = [d[0] for d in cur.description or ()]
    return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]


class _CountryBaselines:
    """The baseline rows, re-read at most every ``BASELINE_TTL_S`` (they cover days) or when
    the period asked for moves to another slot (as ``analytics.detectors`` does)."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._rows: list[dict[str, Any]] = []
        self._at = 0.0

    def get(self, con: duckdb.DuckDBPyConnection, name: str, since: float, until: float,
            ) -> list[dict[str, Any]]:
        from analytics.detectors import BASELINE_TTL_S

        key = (name, since // BASELINE_TTL_S, until // BASELINE_TTL_S)
        if key != self._key or time.monotonic() - self._at > BASELINE_TTL_S:
            self._rows = query(con, name, since=since, until=until)
            self._key, self._at = key, time.monotonic()
        return self._rows


class Pumping:
    name = RULE
    params: Mapping[str, Param] = {
        "min_sends": Param(int, "OTP sends and Verify starts to the prefix in the window", 1),
        "baseline_s": Param(float, "seconds of history before the window", 60),
        "baseline_min_sends": Param(int, "OTP sends the country's baseline needs", 1),
        "min_baseline_conversion": Param(
            float, "below this the account's conversion is unknown: no conversion signal", 0, 1),
        "collapse_ratio": Param(float, "conversion collapse: upper bound below this share of "
                                       "the baseline", 0, 1),
        "z": Param(float, "Wilson bound width in standard deviations", 0.5, 10),
        "lookback_s": Param(float, "a prefix not texted for this long is new", 60),
        "new_prefix_ratio": Param(float, "a new prefix: upper bound below this share of the "
                                         "baseline", 0, 1),
        "min_run": Param(int, "consecutive numbers in one window", 2),
        "codes": Param(list, "Twilio's fraud blocks (30450, 30453, 60410)"),
        "min_code_hits": Param(int, "messages with those codes in the window", 1),
    }

    def __init__(self) -> None:
        self._baseline = _CountryBaselines()

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        # The shared helpers, imported here: analytics.detectors registers this detector.
        from analytics.detectors import _span

        span = _span(ctx, rule)
        found = [r for r in query(ctx.duck, "pumping_window", codes=list(rule["codes"]), **span)
                 if r["sends"] >= rule["min_sends"]]
        if not found:
            return
        base = {r["country"]: r for r in self._baseline.get(
            ctx.duck, "pumping_baseline", span["since"] - rule["baseline_s"], span["since"])}
        first_seen = {r["prefix"]: r["first_seen"] for r in query(
            ctx.duck, "pumping_first_seen", since=span["since"] - rule["lookback_s"],
            prefixes=sorted({r["prefix"] for r in found}))}
        for r in found:
            yield self._judge(ctx, rule, r, base, first_seen)

    def _judge(self, ctx: Context, rule: Rule, r: dict[str, Any],
               base: Mapping[str | None, dict[str, Any]],
               first_seen: Mapping[str, float]) -> Observation:
        from analytics.detectors import _end, _pct, wilson

        sends = int(r["sends"])
        # Conversion is judged on the channels whose baseline knows it: Verify (starts against
        # approvals) and OTP messages (against confirmations), each with baseline_min_sends and
        # a conversion of at least min_baseline_conversion in the country (else the account).
        channels = []
        for kind, done in (("verifications", "verify_approvals"),
                           ("otp_messages", "otp_confirmed")):
            for b in (base.get(r["country"]), base.get(None)):
                if (b is not None and b[kind] >= rule["baseline_min_sends"] and
                        b[done] / b[kind] >= rule["min_baseline_conversion"]):
                    channels.append((int(r[kind]), int(r[done]), int(b[kind]), int(b[done])))
                    break
        tried = sum(c[0] for c in channels)
        known = tried > 0
        approvals = sum(c[1] for c in channels) if known else (
            int(r["verify_approvals"]) + int(r["otp_confirmed"]))
        tried = tried if known else sends
        conversion = approvals / tried if tried else 0.0
        base_sends = sum(c[2] for c in channels)
        baseline = sum(c[3] for c in channels) / base_sends if base_sends else None
        _low, high = wilson(approvals, tried, rule["z"])
        window_start = r["window_end"] - rule.window_s
        new = first_seen.get(r["prefix"], window_start) >= window_start
        signals: list[str] = []
        if known and baseline is not None and high < rule["collapse_ratio"] * baseline:
            signals.append("conversion_collapse")
        if new and known and baseline is not None and high < rule["new_prefix_ratio"] * baseline:
            signals.append("new_prefix")
        if r["longest_run"] >= rule["min_run"]:
            signals.append("sequential_numbers")
        if r["code_hits"] >= rule["min_code_hits"]:
            signals.append("fraud_block_codes")
        segment = Segment(country=r["country"], prefix=r["prefix"])
        run = ""
        if r["longest_run"] >= 2 and r["run_start"] is not None:
            start = int(r["run_start"])
            run = f"…{start:04d}–…{start + int(r['longest_run']) - 1:04d}"
        evidence = {
            "signals": signals, "sends": sends, "verifications": int(r["verifications"]),
            "otp_messages": int(r["otp_messages"]), "judged_sends": tried,
            "approvals": approvals, "conversion": round(conversion, 4),
            "conversion_upper_bound": round(high, 4),
            "baseline_conversion": None if baseline is None else round(baseline, 4),
            "baseline_sends": base_sends,
            "conversion_known": known, "numbers": int(r["numbers"]),
            "new_prefix": new, "longest_run": int(r["longest_run"]), "run": run,
            "fraud_block_codes": int(r["code_hits"]), "codes_seen": r["codes_seen"] or "",
        }
        why = {"conversion_collapse": f"{approvals} of {tried} approved ({_pct(conversion)}, "
                                      f"usually {_pct(baseline)})",
               "new_prefix": "a prefix never texted before",
               "sequential_numbers": f"{r['longest_run']} consecutive numbers ({run})",
               "fraud_block_codes": f"{r['code_hits']} Twilio fraud blocks "
                                    f"({r['codes_seen']})"}
        text = (f"SMS pumping suspected to {r['prefix']}xxxx ({r['country']}): "
                + "; ".join(why[s] for s in signals)
                if signals else
                f"OTP traffic to {r['prefix']}xxxx ({r['country']}): {sends} sends, "
                f"{_pct(conversion)} approved")
        return Observation(segment=segment, end=_end(ctx, r["window_end"]), bad=bool(signals),
                           observed=conversion, baseline=baseline, sample=sends, text=text,
                           evidence=evidence)


# -- the dashboard's Fraud section --------------------------------------------------------------

def conversion_by_prefix(con: duckdb.DuckDBPyConnection, since: datetime | None = None,
                         until: datetime | None = None, limit: int = 200) -> pd.DataFrame:
    frame: pd.DataFrame = con.execute(_queries()["conversion_by_prefix"],
                                      {"since": since, "until": until, "limit": limit}).df()
    return frame


def blocked_sends(con: duckdb.DuckDBPyConnection, since: datetime | None = None,
                  until: datetime | None = None) -> pd.DataFrame:
    frame: pd.DataFrame = con.execute(_queries()["blocked_sends"],
                                      {"since": since, "until": until}).df()
    return frame


def flagged_now(con: duckdb.DuckDBPyConnection, now: datetime | None = None,
                rules_path: Path | None = None) -> pd.DataFrame:
    """The prefixes the ``pumping`` rule (of the shipped rules, or ``rules_path``) judges bad
    in the window ending now, with the signals and figures that make it so (what the alert
    says when it opens)."""
    from analytics.alerts import load_alert_rules
    from analytics.detectors import DETECTORS

    rules = load_alert_rules(DETECTORS, rules_path).rules
    if RULE not in rules or not rules[RULE].enabled:
        return pd.DataFrame(columns=["country", "prefix", "sends", "conversion", "baseline",
                                     "signals", "evidence"])
    rule = rules[RULE]
    ctx = Context(duck=con, now=now or datetime.now(UTC), ends=[now or datetime.now(UTC)])
    out = [{"country": o.segment.country, "prefix": o.segment.prefix, "sends": o.sample,
            "conversion": o.observed, "baseline": o.baseline,
            "signals": ", ".join(o.evidence["signals"]), "evidence": o.text}
           for o in Pumping().observe(ctx, rule) if o.bad]
    return pd.DataFrame(out, columns=["country", "prefix", "sends", "conversion", "baseline",
                                      "signals", "evidence"])
