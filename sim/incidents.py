"""Incidents the simulator can stage on cue, so the demo (and a user trying smsledger out) sees
alerts open and resolve: ``KIND[:TARGET]@SECONDS[+DURATION]``, SECONDS after the traffic starts,
for DURATION seconds (default: until the traffic ends).

- ``pumping:PREFIX`` — SMS pumping: OTP traffic (Verify starts when Verify is configured, else
  OTP messages) to consecutive numbers in PREFIX (E.164 digits, e.g. ``+1206555``), never
  approved; the carrier side answers some of it with 30453 like Twilio's SMS Pumping
  Protection.
- ``carrier-outage:CARRIER`` — messages to a carrier whose name contains CARRIER (any case,
  e.g. ``verizon``) end ``undelivered`` with 30008 (sim/twilio.py);
- ``callback-silence`` — no status callbacks at all, as when the StatusCallback URL stopped
  reaching the ingester (sim/twilio.py);
- ``latency:COUNTRY`` — deliveries to that country (ISO code) take ``EXTRA_LATENCY_S`` more.
"""

from __future__ import annotations

import dataclasses
import re

from sim.world import Fate, Number

# Kind -> what its TARGET names (None: takes no target).
KINDS: dict[str, str | None] = {"pumping": "an E.164 number prefix such as +1206555",
                                "carrier-outage": "part of a carrier's name such as verizon",
                                "callback-silence": None,
                                "latency": "a country code such as GB"}
EXTRA_LATENCY_S = 12.0

_SPEC = re.compile(r"^(?P<kind>[a-z-]+)(?::(?P<target>[^@]+))?@(?P<at>\d+(?:\.\d+)?)"
                   r"(?:\+(?P<duration>\d+(?:\.\d+)?))?$")


class IncidentError(ValueError):
    """A spec that cannot be staged; the message says why."""


@dataclasses.dataclass(frozen=True)
class Incident:
    kind: str
    target: str
    at_s: float
    duration_s: float | None        # None: until the traffic ends

    def active(self, elapsed_s: float) -> bool:
        return elapsed_s >= self.at_s and (self.duration_s is None or
                                           elapsed_s < self.at_s + self.duration_s)


def parse(spec: str) -> Incident:
    match = _SPEC.match(spec.strip())
    if match is None:
        raise IncidentError(f"{spec!r}: use KIND[:TARGET]@SECONDS[+DURATION], e.g. "
                            "pumping:+1206555@60+300")
    kind, target = match["kind"], match["target"] or ""
    if kind not in KINDS:
        raise IncidentError(f"{spec!r}: unknown incident {kind!r} (known: "
                            f"{', '.join(sorted(KINDS))})")
    if KINDS[kind] and not target:
        raise IncidentError(f"{spec!r}: {kind} needs a target: {KINDS[kind]}")
    if not KINDS[kind] and target:
        raise IncidentError(f"{spec!r}: {kind} takes no target")
    if kind == "pumping" and not re.fullmatch(r"\+\d{4,12}", target):
        raise IncidentError(f"{spec!r}: the prefix must be + and 4 to 12 digits, not "
                            f"{target!r}")
    duration = float(match["duration"]) if match["duration"] else None
    return Incident(kind, target, float(match["at"]), duration)


def apply(incidents: tuple[Incident, ...], elapsed_s: float, number: Number,
          fate: Fate) -> tuple[Fate, bool]:
    """What the incidents active ``elapsed_s`` into the run do to one message: its fate, and
    whether its status callbacks are silenced."""
    silent = False
    for incident in incidents:
        if not incident.active(elapsed_s) or fate.create_error is not None:
            continue
        if incident.kind == "callback-silence":
            silent = True
        elif (incident.kind == "carrier-outage"
              and incident.target.lower() in number.carrier.lower()):
            fate = dataclasses.replace(fate, final_status="undelivered", error_code=30008)
        elif (incident.kind == "latency" and incident.target.upper() == number.country
              and fate.final_status == "delivered"):
            fate = dataclasses.replace(fate, final_after_s=fate.final_after_s + EXTRA_LATENCY_S)
    return fate, silent
