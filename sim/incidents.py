"""Planned incidents, so that the demo and the tests see alerts open and resolve:

- ``carrier-outage:CARRIER@SECONDS[+DURATION]`` — messages to that carrier (a case-insensitive
  part of its name, e.g. ``verizon``) end ``undelivered`` with 30008;
- ``callback-silence@SECONDS[+DURATION]`` — no status callbacks at all (a StatusCallback URL
  that stopped reaching the ingester);
- ``latency:COUNTRY@SECONDS[+DURATION]`` — deliveries to that country (ISO code) take 12 s more.

SECONDS counts from the simulator's start; DURATION defaults to 300 s.
"""

from __future__ import annotations

import dataclasses
import re

from sim.world import Fate, Number

DEFAULT_DURATION_S = 300.0
EXTRA_LATENCY_S = 12.0
_SPEC = re.compile(r"^(carrier-outage|callback-silence|latency)(?::([^@]+))?@(\d+(?:\.\d+)?)"
                   r"(?:\+(\d+(?:\.\d+)?))?$")


class IncidentError(ValueError):
    """A malformed --incident; the message shows the expected forms."""


@dataclasses.dataclass(frozen=True)
class Incident:
    kind: str
    target: str            # carrier name part, country code, or "" for callback-silence
    start_s: float
    duration_s: float

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.start_s + self.duration_s

    def __str__(self) -> str:
        target = f":{self.target}" if self.target else ""
        return f"{self.kind}{target}@{self.start_s:g}+{self.duration_s:g}"


def parse(spec: str) -> Incident:
    match = _SPEC.match(spec.strip())
    if match is None:
        raise IncidentError(
            f"bad incident {spec!r}: use carrier-outage:CARRIER@SECONDS[+DURATION], "
            "callback-silence@SECONDS[+DURATION] or latency:COUNTRY@SECONDS[+DURATION]")
    kind, target, start, duration = match.groups()
    if (kind == "callback-silence") != (target is None):
        raise IncidentError(f"bad incident {spec!r}: {kind} "
                            + ("takes no target" if kind == "callback-silence"
                               else "needs a target (carrier-outage:verizon@60)"))
    return Incident(kind, (target or "").strip(), float(start),
                    float(duration) if duration else DEFAULT_DURATION_S)


def apply(incidents: tuple[Incident, ...], elapsed_s: float, number: Number,
          fate: Fate) -> tuple[Fate, bool]:
    """The fate under the incidents active now, and whether callbacks are silenced."""
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
