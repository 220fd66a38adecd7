"""The simulator's planned incidents: what each does to the messages Twilio would deliver,
and the --incident forms (a bad one is a clear CLI error)."""

from __future__ import annotations

import asyncio
import time

import pytest

from sim import incidents
from sim.incidents import Incident, IncidentError, parse
from sim.twilio import SimConfig, TwilioSim
from sim.world import Fate, Number

NUMBER = Number("+12025550143", "US", "Verizon Wireless", "311", "480", "mobile", "ok", 2.2)
OK = Fate(None, "delivered", None, 0.5, 3.0)


def test_forms_and_errors() -> None:
    assert parse("carrier-outage:verizon@60+120") == Incident("carrier-outage", "verizon",
                                                                60, 120)
    assert parse("callback-silence@30").duration_s is None      # until the traffic ends
    assert parse("latency:GB@0+10") == Incident("latency", "GB", 0, 10)
    for bad, why in (("carrier-outage@60", "needs a target"),
                     ("callback-silence:x@5", "takes no target"), ("latency:GB", "use KIND"),
                     ("meteor@5", "unknown incident")):
        with pytest.raises(IncidentError, match=why):
            parse(bad)


def test_each_incident_changes_only_its_target_and_its_time() -> None:
    outage = (parse("carrier-outage:VERIZON@10+20"),)
    assert incidents.apply(outage, 5, NUMBER, OK) == (OK, False)
    fate, silent = incidents.apply(outage, 15, NUMBER, OK)
    assert (fate.final_status, fate.error_code, silent) == ("undelivered", 30008, False)
    assert incidents.apply(outage, 31, NUMBER, OK) == (OK, False)
    other = Number("+447400123456", "GB", "EE", "234", "30", "mobile", "ok", 2.6)
    assert incidents.apply(outage, 15, other, OK) == (OK, False)
    slow, _ = incidents.apply((parse("latency:us@0"),), 1, NUMBER, OK)
    assert slow.final_after_s == OK.final_after_s + incidents.EXTRA_LATENCY_S
    assert incidents.apply((parse("callback-silence@0"),), 1, NUMBER, OK) == (OK, True)


async def test_the_simulator_applies_them() -> None:
    sim = TwilioSim(SimConfig(account_sid="AC" + "1" * 32, auth_token="t" * 32, seed=3,
                              numbers=50, time_scale=0.01, duplicate_rate=0, reorder_rate=0,
                              incidents=(parse("callback-silence@0+1000"),
                                         parse("carrier-outage:at&t@0+1000"))))
    await sim.start()
    try:
        healthy = [n for n in sim.numbers if n.profile == "good" and "at&t" in n.carrier.lower()]
        assert healthy
        sids = []
        for n in healthy[:5]:
            status, body = sim.create_message(
                {"To": n.e164, "From": "+15005550006", "Body": "your code is 1234",
                 "StatusCallback": "http://127.0.0.1:9/unreachable"}, [])
            assert status == 201
            sids.append(body["sid"])
        deadline = time.monotonic() + 30
        while any(sim.messages[s]["status"] in ("queued", "sent") for s in sids):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert {(sim.messages[s]["status"], sim.messages[s]["error_code"]) for s in sids} == {
            ("undelivered", 30008)}
        assert sim.pending == 0          # callback silence: nothing was scheduled
    finally:
        await sim.close()
