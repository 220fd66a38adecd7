"""Alerts: planted incidents open within two ticks, near misses never do, hysteresis, the state
derived from the log, the rules file checked at start. Real PostgreSQL, real DuckDB files, the
real rollup on events built by the real builders."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import pytest

from analytics.alerts import (
    AlertEngine,
    AlertRules,
    AlertRulesError,
    Rule,
    load_alert_rules,
    read_alert_log,
)
from analytics.detectors import DETECTORS, shipped
from schema.events import Event
from tests.factory import OUR, T0, append, inbound, message, rollup

NOW = T0 + timedelta(days=3)


def phone(i: int) -> str:
    return f"+4474001{i:05d}"


def traffic(start: int, when: datetime, count: int, *, spread_s: float, outcome: str = "delivered",
            code: int | None = None, latency_s: float = 3.0, category: str = "otp",
            ) -> list[Event]:
    """``count`` messages from ``start`` (their own number each) spread over ``spread_s``."""
    out: list[Event] = []
    for i in range(count):
        at = when + timedelta(seconds=spread_s * i / max(count, 1))
        out += message(start + i, phone(start + i), at, outcome, code, latency_s, category)
    return out


def baseline(start: int = 0, count: int = 300) -> list[Event]:
    """Two days of healthy history before the windows."""
    return traffic(start, NOW - timedelta(days=2), count, spread_s=86400 * 2 - 3600)


def only(name: str, **changes: Any) -> AlertRules:
    """The shipped rules with just ``name`` enabled (and ``changes`` to its fields)."""
    rules = load_alert_rules(DETECTORS)
    picked: dict[str, Rule] = {}
    for rule_name, rule in rules.rules.items():
        if rule_name != name:
            picked[rule_name] = Rule(**{**rule.__dict__, "enabled": False})
            continue
        common = {k: changes.pop(k) for k in list(changes) if k in
                  ("window_s", "open_after", "resolve_after")}
        picked[rule_name] = Rule(**{**rule.__dict__, **common,
                                    "params": {**rule.params, **changes}})
    return AlertRules(version=rules.version, step_s=rules.step_s, rules=picked)


async def tick(engine: AlertEngine, duck: duckdb.DuckDBPyConnection, db: asyncpg.Connection,
               now: datetime) -> list[str]:
    return [f"{e.type}:{e.payload['alert_id']}" for e in await engine.evaluate(duck, db, now)]


async def open_alerts(db: asyncpg.Connection) -> dict[tuple[str, str], Any]:
    return (await read_alert_log(db)).open


async def rolled_up(db_url: str, db: asyncpg.Connection,
                    path: Path) -> duckdb.DuckDBPyConnection:
    """The model with every stored event applied. The reader stops below the oldest open
    transaction on the whole server (gap-free reading), and parallel test sessions share it:
    roll up again until the model has caught up, within a deadline."""
    want = await db.fetchval("SELECT count(*) FROM events")
    deadline = time.monotonic() + 60
    while True:
        duck, _ = await rollup(db_url, path)
        have = duck.execute("SELECT count(*) FROM events").fetchone()
        if (have and have[0] >= want) or time.monotonic() > deadline:
            return duck
        duck.close()
        await asyncio.sleep(0.2)


async def model(db_url: str, db: asyncpg.Connection, tmp_path: Path,
                evs: list[Event]) -> duckdb.DuckDBPyConnection:
    await append(db, evs)
    return await rolled_up(db_url, db, tmp_path / "model.duckdb")


async def test_carrier_outage_opens_within_two_ticks_and_resolves(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    outage = traffic(1000, NOW - timedelta(minutes=9), 60, spread_s=480, outcome="undelivered",
                     code=30008)
    duck = await model(db_url, db, tmp_path, baseline() + outage)
    engine = AlertEngine(only("delivery_rate_drop"), shipped())
    first = await tick(engine, duck, db, NOW)
    second = await tick(engine, duck, db, NOW + timedelta(seconds=5))
    opened = first + second
    assert opened, "a 60-message outage against a clean baseline opened nothing"
    segments = {key for (_rule, key) in await open_alerts(db)}
    # The whole chain: carrier x country x sender, and each alone.
    assert any(k.startswith("carrier=") and "country=GB" in k and f"sender={OUR}" in k
               for k in segments)
    assert f"carrier=*,country=*,sender={OUR},prefix=*,code=*" in segments
    assert "carrier=*,country=GB,sender=*,prefix=*,code=*" in segments
    # Ticking on changes nothing: never two open alerts for one rule and segment.
    assert await tick(engine, duck, db, NOW + timedelta(seconds=10)) == []
    log = await read_alert_log(db)
    assert len([t for t in log.transitions if t.kind == "opened"]) == len(segments)

    # Healthy traffic afterwards: resolved after resolve_after good windows, once each.
    later = NOW + timedelta(minutes=30)
    await append(db, traffic(2000, later - timedelta(minutes=14), 150, spread_s=14 * 60))
    duck.close()
    duck = await rolled_up(db_url, db, tmp_path / "model.duckdb")
    resolved = await tick(engine, duck, db, later)
    assert sorted(r.split(":", 1)[1] for r in resolved) == sorted(
        t.alert_id for t in log.open.values())
    assert await open_alerts(db) == {}
    assert await tick(engine, duck, db, later + timedelta(seconds=5)) == []
    duck.close()


async def test_delivery_near_misses_do_not_open(db_url: str, db: asyncpg.Connection,
                                                tmp_path: Path) -> None:
    few = traffic(1000, NOW - timedelta(minutes=9), 12, spread_s=480, outcome="undelivered",
                  code=30008)                                     # too few messages
    dip = (traffic(2000, NOW - timedelta(minutes=9), 180, spread_s=480)  # within noise
           + traffic(3000, NOW - timedelta(minutes=9), 14, spread_s=480, outcome="undelivered",
                     code=30003))
    duck = await model(db_url, db, tmp_path, baseline() + few + dip)
    engine = AlertEngine(only("delivery_rate_drop"), shipped())
    for s in (0, 5, 60, 120):
        assert await tick(engine, duck, db, NOW + timedelta(seconds=s)) == []
    duck.close()


async def test_hysteresis_one_bad_window_is_not_enough(db_url: str, db: asyncpg.Connection,
                                                       tmp_path: Path) -> None:
    # Failures only in the last minute: the window ending a step earlier is clean, so with
    # open_after = 2 nothing opens; a minute later both windows hold them, and it opens.
    burst = traffic(1000, NOW - timedelta(seconds=50), 60, spread_s=40, outcome="undelivered",
                    code=30008)
    duck = await model(db_url, db, tmp_path, baseline() + burst)
    engine = AlertEngine(only("delivery_rate_drop", open_after=2, resolve_after=3), shipped())
    assert await tick(engine, duck, db, NOW) == []
    assert await tick(engine, duck, db, NOW + timedelta(seconds=61)) != []
    # resolve_after = 3: the window ending at NOW + 601 s is the first without the burst; one
    # and two good windows leave it open, the third resolves it.
    assert await tick(engine, duck, db, NOW + timedelta(seconds=601)) == []
    assert await tick(engine, duck, db, NOW + timedelta(seconds=661)) == []
    assert await tick(engine, duck, db, NOW + timedelta(seconds=721)) != []
    assert await open_alerts(db) == {}
    duck.close()


async def test_open_state_comes_from_the_log(db_url: str, db: asyncpg.Connection,
                                             tmp_path: Path) -> None:
    """A new engine (a restarted worker, `alerts check`) sees the alerts another opened, and
    a reopened alert after a resolve gets a new id."""
    outage = traffic(1000, NOW - timedelta(minutes=9), 60, spread_s=480, outcome="undelivered",
                     code=30008)
    duck = await model(db_url, db, tmp_path, baseline() + outage)
    rules = only("delivery_rate_drop")
    opened = await tick(AlertEngine(rules, shipped()), duck, db, NOW)
    assert opened
    assert await tick(AlertEngine(rules, shipped()), duck, db, NOW + timedelta(seconds=1)) == []
    assert all(a.endswith("|1") for a in opened)
    duck.close()


async def test_error_code_spike_names_registration_codes_the_senders_problem(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    spike = traffic(1000, NOW - timedelta(minutes=9), 40, spread_s=480, outcome="undelivered",
                    code=30034)
    one_30007 = traffic(2000, NOW - timedelta(minutes=9), 1, spread_s=1, outcome="undelivered",
                        code=30007)
    duck = await model(db_url, db, tmp_path, baseline() + spike + one_30007)
    engine = AlertEngine(only("error_code_spike"), shipped())
    changed = await engine.evaluate(duck, db, NOW)
    changed += await engine.evaluate(duck, db, NOW + timedelta(seconds=5))
    assert [e.payload["segment"]["code"] for e in changed] == ["30034"]
    assert "registration" in changed[0].payload["text"]
    assert changed[0].payload["evidence"]["senders_problem"] is True
    duck.close()


async def test_otp_latency_over_8_s(db_url: str, db: asyncpg.Connection,
                                    tmp_path: Path) -> None:
    slow = traffic(1000, NOW - timedelta(minutes=9), 30, spread_s=480, latency_s=14.0)
    duck = await model(db_url, db, tmp_path, baseline() + slow)
    engine = AlertEngine(only("otp_latency"), shipped())
    changed = await engine.evaluate(duck, db, NOW)
    changed += await engine.evaluate(duck, db, NOW + timedelta(seconds=5))
    assert {e.payload["segment"]["country"] for e in changed} >= {"GB"}
    assert all(e.payload["observed"] > 8 for e in changed)
    duck.close()


async def test_otp_latency_near_miss_few_messages(db_url: str, db: asyncpg.Connection,
                                                  tmp_path: Path) -> None:
    near = traffic(5000, NOW - timedelta(minutes=9), 10, spread_s=480, latency_s=30.0)
    ok = traffic(6000, NOW - timedelta(minutes=9), 40, spread_s=480, latency_s=4.0)
    duck = await model(db_url, db, tmp_path, baseline() + near + ok)
    engine = AlertEngine(only("otp_latency"), shipped())
    for s in (0, 5):
        assert await tick(engine, duck, db, NOW + timedelta(seconds=s)) == []
    duck.close()


async def test_opt_out_spike_per_sender(db_url: str, db: asyncpg.Connection,
                                        tmp_path: Path) -> None:
    sends = traffic(1000, NOW - timedelta(minutes=50), 100, spread_s=600, category="marketing")
    stops: list[Event] = []
    for i in range(20):
        stops += inbound(90_000 + i, phone(1000 + i), "STOP",
                         NOW - timedelta(minutes=30) + timedelta(seconds=30 * i))
    duck = await model(db_url, db, tmp_path, baseline() + sends + stops)
    engine = AlertEngine(only("opt_out_spike"), shipped())
    changed = await engine.evaluate(duck, db, NOW)
    changed += await engine.evaluate(duck, db, NOW + timedelta(seconds=5))
    assert [e.payload["segment"]["sender"] for e in changed] == [OUR]
    duck.close()


async def test_opt_out_near_miss(db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    sends = traffic(1000, NOW - timedelta(minutes=50), 300, spread_s=600, category="marketing")
    stops: list[Event] = []
    for i in range(3):
        stops += inbound(90_000 + i, phone(1000 + i), "STOP", NOW - timedelta(minutes=20))
    duck = await model(db_url, db, tmp_path, baseline() + sends + stops)
    engine = AlertEngine(only("opt_out_spike"), shipped())
    for s in (0, 5):
        assert await tick(engine, duck, db, NOW + timedelta(seconds=s)) == []
    duck.close()


async def test_callback_silence(db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    from tests.factory import sent

    silent = [sent(f"SM{9000 + i:032x}", phone(9000 + i),
                   NOW - timedelta(seconds=570 - 12 * i)) for i in range(40)]
    duck = await model(db_url, db, tmp_path, baseline() + silent)
    engine = AlertEngine(only("callback_silence"), shipped())
    changed = await engine.evaluate(duck, db, NOW)
    changed += await engine.evaluate(duck, db, NOW + timedelta(seconds=5))
    assert [e.payload["rule"] for e in changed] == ["callback_silence"]
    duck.close()


async def test_callback_silence_near_miss_recent_sends(db_url: str, db: asyncpg.Connection,
                                                       tmp_path: Path) -> None:
    from tests.factory import sent

    # Sent within the grace period: their callbacks may still come.
    recent = [sent(f"SM{9000 + i:032x}", phone(9000 + i), NOW - timedelta(seconds=60))
              for i in range(30)]
    healthy = traffic(1000, NOW - timedelta(minutes=9), 30, spread_s=400)
    duck = await model(db_url, db, tmp_path, baseline() + recent + healthy)
    engine = AlertEngine(only("callback_silence"), shipped())
    for s in (0, 5):
        assert await tick(engine, duck, db, NOW + timedelta(seconds=s)) == []
    duck.close()


def test_rules_file_errors_name_the_field(tmp_path: Path) -> None:
    shipped_text = (Path(__file__).parent.parent / "analytics" / "alert_rules.toml").read_text()
    bad = tmp_path / "rules.toml"
    bad.write_text(shipped_text.replace("min_drop = 0.10", "min_drop = 0.10\nmin_dorp = 1"))
    with pytest.raises(AlertRulesError, match=r"rules\.delivery_rate_drop\.min_dorp"):
        load_alert_rules(DETECTORS, bad)
    bad.write_text(shipped_text.replace("min_drop = 0.10", "min_drop = -1"))
    with pytest.raises(AlertRulesError, match=r"rules\.delivery_rate_drop\.min_drop must be >="):
        load_alert_rules(DETECTORS, bad)
    bad.write_text(shipped_text.replace("\nopen_after = 2", "\nopen_after = \"two\"", 1))
    with pytest.raises(AlertRulesError, match=r"open_after must be a whole number"):
        load_alert_rules(DETECTORS, bad)
    bad.write_text(shipped_text + "\n[rules.no_such_rule]\nenabled = true\n")
    with pytest.raises(AlertRulesError, match="unknown rule rules.no_such_rule"):
        load_alert_rules(DETECTORS, bad)
    assert load_alert_rules(DETECTORS).version


async def test_ingest_degraded_from_the_ingesters_metrics(
        db: asyncpg.Connection, ingest: Any) -> None:
    """The probe reads the real ingester's /metrics; the spool in use past max_spool_s opens,
    a shorter spell (a near miss) does not, and a rising 403 share opens its own alert."""
    from analytics.alerts import IngestStatus
    from analytics.ingest_probe import IngestProbe, parse_metrics

    live = await IngestProbe(str(ingest.make_url("/"))).read()
    assert live.reachable and not live.degraded and live.spool_depth == 0
    engine = AlertEngine(only("ingest_degraded"), shipped())
    duck = duckdb.connect()
    t0 = datetime.now().astimezone()

    async def at(s: float, status: IngestStatus) -> list[str]:
        return [e.payload["segment"]["code"] for e in
                await engine.evaluate(duck, db, t0 + timedelta(seconds=s), status)]

    spooling = IngestStatus(reachable=True, degraded=True, spool_depth=40)
    assert await at(0, spooling) == []
    assert await at(60, spooling) == []                    # a minute: a near miss
    assert await at(70, live) == []                        # recovered
    assert await at(80, spooling) == []
    assert await at(250, spooling) == ["spool"]            # 170 s > 120 s
    assert await at(260, live) == ["spool"]                # resolved
    text = ('smsledger_requests_rejected_total{reason="signature_invalid"} 2\n'
            'smsledger_events_appended_total 110\n')
    assert await at(270, parse_metrics(text)) == []
    text = ('smsledger_requests_rejected_total{reason="signature_invalid"} 52\n'
            'smsledger_events_appended_total 120\n')
    assert await at(280, parse_metrics(text)) == ["403"]   # 50 of 60 refused
    duck.close()


async def test_worker_metrics_gauges(db_url: str, db: asyncpg.Connection,
                                     tmp_path: Path) -> None:
    """The Prometheus gauges per carrier and per country, served over HTTP."""
    import aiohttp

    from analytics.worker_metrics import WorkerMetrics

    now = datetime.now().astimezone()
    evs = (traffic(0, now - timedelta(minutes=10), 30, spread_s=300, latency_s=5.0)
           + traffic(100, now - timedelta(minutes=10), 10, spread_s=300, outcome="undelivered",
                     code=30003))
    duck = await model(db_url, db, tmp_path, evs)
    metrics = WorkerMetrics()
    metrics.update(duck, {"delivery_rate_drop": 2}, now.timestamp())
    duck.close()
    port = await metrics.serve(0)
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    finally:
        await metrics.close()
    assert 'smsledger_messages_window{dimension="country",name="GB"} 40.0' in text
    assert 'smsledger_delivery_rate{dimension="country",name="GB"} 0.75' in text
    assert 'smsledger_otp_p50_seconds{dimension="carrier",name="Three"} 5.0' in text
    assert 'smsledger_alerts_open{rule="delivery_rate_drop"} 2.0' in text
