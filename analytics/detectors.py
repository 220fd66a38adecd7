"""The shipped detectors (see ``analytics/alerts.py`` for the interface and how to add one).

Each reads the model with the queries in ``analytics/sql/detectors.sql`` and judges windows
against the segment's own baseline: the ``baseline_s`` before the oldest window. A baseline is
re-read at most once per ``BASELINE_TTL_S`` (it covers days, and a minute more changes nothing),
so a tick costs what its windows cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import duckdb

from analytics.alerts import (
    Baselines,
    Context,
    Detector,
    IngestStatus,
    Observation,
    Param,
    Rule,
    Segment,
)
from schema.named_sql import named


def queries() -> Mapping[str, str]:
    """``analytics/sql/detectors.sql`` by its ``-- name:`` headers (read once)."""
    return named("analytics", "sql/detectors.sql")


def rows(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> list[dict[str, Any]]:
    cur = con.execute(queries()[name], params)
    columns = [d[0] for d in cur.description or ()]
    return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]


def wilson(hits: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion: (lower, upper)."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _span(ctx: Context, rule: Rule) -> dict[str, Any]:
    """The windows' parameters: the span read covers every window, and nothing more."""
    ends = [e.timestamp() for e in ctx.ends]
    return {"since": min(ends) - rule.window_s, "until": max(ends), "ends": ends,
            "window_s": rule.window_s}


def _end(ctx: Context, epoch: float) -> datetime:
    """The window end in ``ctx.ends`` that ``epoch`` came from (exactly that object)."""
    return min(ctx.ends, key=lambda e: abs(e.timestamp() - epoch))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


class DeliveryRateDrop:
    name = "delivery_rate_drop"
    params: Mapping[str, Param] = {
        "min_volume": Param(int, "messages with a final status in the window", 1),
        "baseline_s": Param(float, "seconds of history before the window", 60),
        "baseline_min_volume": Param(int, "messages the baseline needs", 1),
        "min_drop": Param(float, "absolute drop below the baseline", 0, 1),
        "z": Param(float, "Wilson bound width in standard deviations", 0.5, 10),
    }

    def __init__(self) -> None:
        self._baseline = Baselines(rows)

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        span = _span(ctx, rule)
        base_until = span["since"]
        base = {(r["carrier"], r["country"], r["sender"]): r for r in self._baseline.get(
            ctx.duck, "delivery_baseline", base_until - rule["baseline_s"], base_until)}
        for r in rows(ctx.duck, "delivery_window", **span):
            if r["sample"] < rule["min_volume"]:
                continue
            b = base.get((r["carrier"], r["country"], r["sender"]))
            if b is None or b["sample"] < rule["baseline_min_volume"]:
                continue
            rate, baseline = r["good"] / r["sample"], b["good"] / b["sample"]
            _low, high = wilson(r["good"], r["sample"], rule["z"])
            bad = high < baseline - rule["min_drop"]
            segment = Segment(carrier=r["carrier"], country=r["country"], sender=r["sender"])
            yield Observation(
                segment=segment, end=_end(ctx, r["window_end"]), bad=bad, observed=rate,
                baseline=baseline, sample=r["sample"],
                text=(f"Delivery rate for {segment.label()}: {_pct(rate)} of {r['sample']} "
                      f"messages in the last {rule.window_s / 60:g} min, against "
                      f"{_pct(baseline)} usually"),
                evidence={"delivered": r["good"], "wilson_upper": round(high, 4),
                          "baseline_sample": b["sample"]})


def _sender_code(code: int, rule: Rule) -> bool:
    return code in rule["sender_codes"] or code // 100 in rule["sender_code_blocks"]


class ErrorCodeSpike:
    name = "error_code_spike"
    params: Mapping[str, Param] = {
        "min_count": Param(int, "messages with the code in the window", 1),
        "min_share": Param(float, "share above the baseline's", 0, 1),
        "baseline_s": Param(float, "seconds of history before the window", 60),
        "z": Param(float, "Wilson bound width in standard deviations", 0.5, 10),
        "sender_codes": Param(list, "codes that are the sender's problem"),
        "sender_code_blocks": Param(list, "code // 100 blocks that are the sender's problem"),
    }

    def __init__(self) -> None:
        self._baseline = Baselines(rows)

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        span = _span(ctx, rule)
        base = {(r["sender"], r["error_code"]): r for r in self._baseline.get(
            ctx.duck, "error_baseline", span["since"] - rule["baseline_s"], span["since"])}
        for r in rows(ctx.duck, "error_window", **span):
            if r["hits"] < rule["min_count"]:
                continue
            b = base.get((r["sender"], r["error_code"]))
            baseline = b["hits"] / b["sample"] if b and b["sample"] else 0.0
            share = r["hits"] / r["sample"]
            low, _high = wilson(r["hits"], r["sample"], rule["z"])
            code = int(r["error_code"])
            senders = _sender_code(code, rule)
            segment = Segment(sender=r["sender"], code=str(code))
            meaning = r["meaning"] or "unknown code"
            whose = (f"the sender {r['sender']}'s registration or compliance problem, not the "
                     "recipients'" if senders else "")
            yield Observation(
                segment=segment, end=_end(ctx, r["window_end"]),
                bad=low > baseline + rule["min_share"], observed=share, baseline=baseline,
                sample=r["sample"],
                text=(f"Error {code} ({meaning}) on {_pct(share)} of {r['sample']} messages "
                      f"from {r['sender']}, against {_pct(baseline)} usually"
                      + (f": {whose}" if whose else "")),
                evidence={"code": code, "count": r["hits"], "meaning": meaning,
                          "senders_problem": senders})


class OtpLatency:
    name = "otp_latency"
    params: Mapping[str, Param] = {
        "min_volume": Param(int, "delivered OTP messages in the window", 1),
        "max_p50_s": Param(float, "median seconds from send to delivered", 0.1),
        "baseline_s": Param(float, "seconds of history before the window", 60),
    }

    def __init__(self) -> None:
        self._baseline = Baselines(rows)

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        span = _span(ctx, rule)
        base = {(r["carrier"], r["country"]): r for r in self._baseline.get(
            ctx.duck, "otp_latency_baseline", span["since"] - rule["baseline_s"],
            span["since"])}
        for r in rows(ctx.duck, "otp_latency_window", **span):
            if r["sample"] < rule["min_volume"]:
                continue
            b = base.get((r["carrier"], r["country"]))
            segment = Segment(carrier=r["carrier"], country=r["country"])
            p50 = float(r["p50"])
            yield Observation(
                segment=segment, end=_end(ctx, r["window_end"]), bad=p50 > rule["max_p50_s"],
                observed=p50, baseline=float(b["p50"]) if b else None, sample=r["sample"],
                text=(f"OTP codes to {segment.label()} take {p50:.1f} s (median of "
                      f"{r['sample']}), over the {rule['max_p50_s']:g} s line"),
                evidence={"p90_s": round(float(r["p90"]), 2)})


class OptOutSpike:
    name = "opt_out_spike"
    params: Mapping[str, Param] = {
        "min_count": Param(int, "opt-outs in the window", 1),
        "min_increase": Param(float, "rate above the baseline's", 0, 1),
        "baseline_s": Param(float, "seconds of history before the window", 60),
        "z": Param(float, "Wilson bound width in standard deviations", 0.5, 10),
    }

    def __init__(self) -> None:
        self._baseline = Baselines(rows)

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        span = _span(ctx, rule)
        base = {r["sender"]: r for r in self._baseline.get(
            ctx.duck, "opt_out_baseline", span["since"] - rule["baseline_s"], span["since"])}
        for r in rows(ctx.duck, "opt_out_window", **span):
            if r["opt_outs"] < rule["min_count"]:
                continue
            b = base.get(r["sender"])
            baseline = b["opt_outs"] / b["sample"] if b and b["sample"] else 0.0
            rate = r["opt_outs"] / r["sample"]
            low, _high = wilson(r["opt_outs"], r["sample"], rule["z"])
            segment = Segment(sender=r["sender"])
            yield Observation(
                segment=segment, end=_end(ctx, r["window_end"]),
                bad=low > baseline + rule["min_increase"], observed=rate, baseline=baseline,
                sample=r["sample"],
                text=(f"Opt-outs from {r['sender']}: {r['opt_outs']} in the last "
                      f"{rule.window_s / 60:g} min ({_pct(rate)} of its sends), against "
                      f"{_pct(baseline)} usually"),
                evidence={"opt_outs": r["opt_outs"]})


class CallbackSilence:
    name = "callback_silence"
    params: Mapping[str, Param] = {
        "grace_s": Param(float, "seconds a callback may take", 1),
        "min_sends": Param(int, "sends older than grace_s in the window", 1),
        "max_silent_share": Param(float, "share of them with no callback at all", 0, 1),
    }

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        span = _span(ctx, rule)
        for r in rows(ctx.duck, "callback_silence", grace_s=rule["grace_s"], **span):
            if r["sample"] < rule["min_sends"]:
                continue
            share = r["silent"] / r["sample"]
            segment = Segment(sender=r["sender"])
            yield Observation(
                segment=segment, end=_end(ctx, r["window_end"]),
                bad=share > rule["max_silent_share"], observed=share, baseline=None,
                sample=r["sample"],
                text=(f"No status callbacks for {r['silent']} of {r['sample']} messages sent "
                      f"from {r['sender']} more than {rule['grace_s']:g} s ago: is the "
                      "StatusCallback URL set, the proxy up, SMSLEDGER_PUBLIC_URL right?"),
                evidence={"silent": r["silent"]})


class IngestDegraded:
    """The ingester's own state, polled by the worker (``analytics/ingest_probe.py``): the spool
    in use for longer than ``max_spool_s``, or the share of webhooks refused for their
    signature since the last look above ``max_reject_share``. Live only: the newest end."""
    name = "ingest_degraded"
    params: Mapping[str, Param] = {
        "max_spool_s": Param(float, "seconds the spool may stay in use", 0),
        "max_reject_share": Param(float, "share of webhooks refused with 403", 0, 1),
        "min_requests": Param(int, "webhooks since the last look, for the 403 share", 1),
    }

    def __init__(self) -> None:
        self._spool_since: float | None = None
        self._last: IngestStatus | None = None

    def observe(self, ctx: Context, rule: Rule) -> Iterable[Observation]:
        status = ctx.ingest
        if status is None or not status.reachable:
            return
        now = ctx.now.timestamp()
        spooling = status.degraded or status.spool_depth > 0
        if not spooling:
            self._spool_since = None
        elif self._spool_since is None:
            self._spool_since = now
        for_s = 0.0 if self._spool_since is None else now - self._spool_since
        yield Observation(
            segment=Segment(code="spool"),
            end=ctx.ends[0], bad=spooling and for_s > rule["max_spool_s"], observed=for_s,
            baseline=rule["max_spool_s"], sample=status.spool_depth,
            text=(f"The ingester has been answering from its spool for {for_s:.0f} s "
                  f"({status.spool_depth} events waiting): PostgreSQL is down or slow"
                  if spooling else "The ingester writes to PostgreSQL again (spool empty)"),
            evidence={"spool_events": status.spool_depth, "degraded": status.degraded})
        last, self._last = self._last, status
        if last is None:
            return
        signature = sum(v - last.rejects.get(k, 0.0) for k, v in status.rejects.items()
                        if k.startswith("signature"))
        requests = signature + max(0.0, status.appended - last.appended)
        if requests < rule["min_requests"]:
            return
        share = signature / requests
        yield Observation(
            segment=Segment(code="403"), end=ctx.ends[0], bad=share > rule["max_reject_share"],
            observed=share, baseline=rule["max_reject_share"], sample=int(requests),
            text=(f"{_pct(share)} of {requests:.0f} webhooks refused for their signature "
                  "(403): SMSLEDGER_PUBLIC_URL, the proxy's headers or the auth token?"),
            evidence={"signature_rejects": signature})


# Every detector the rules file may name, by rule name: its class (``params`` is read from it,
# an instance made per worker). A new detector is one more entry.
DETECTORS: dict[str, type[Detector]] = {
    d.name: d for d in (DeliveryRateDrop, ErrorCodeSpike, OtpLatency, OptOutSpike,
                        CallbackSilence, IngestDegraded)}


# Detectors in modules of their own, built on the helpers above.
from analytics.pumping import Pumping  # noqa: E402

DETECTORS[Pumping.name] = Pumping


def shipped() -> dict[str, Detector]:
    """A fresh set of the detectors (they keep baselines and probe state between ticks)."""
    return {name: make() for name, make in DETECTORS.items()}
