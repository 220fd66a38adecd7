"""How the worker learns the ingester's state: it reads the ingester's Prometheus ``/metrics``
(``SMSLEDGER_INGEST_URL``) after each rollup, with a short timeout, and keeps what the
``ingest_degraded`` rule needs: degraded (answering from its spool), the spool depth, requests
refused by reason and events appended (the 403 share is taken between two looks). The event
log cannot tell this: an ingester on its spool writes nothing to PostgreSQL."""

from __future__ import annotations

import logging
import re

import aiohttp

from analytics.alerts import IngestStatus

log = logging.getLogger("smsledger.analytics.ingest_probe")

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> IngestStatus:
    """The few samples the rule needs, from Prometheus text exposition."""
    degraded, spool, appended = 0.0, 0.0, 0.0
    rejects: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        if name == "smsledger_degraded":
            degraded = value
        elif name == "smsledger_spool_events":
            spool = value
        elif name == "smsledger_events_appended_total":
            appended += value
        elif name == "smsledger_requests_rejected_total":
            reason = dict(_LABEL.findall(labels or "")).get("reason", "")
            rejects[reason] = rejects.get(reason, 0.0) + value
    return IngestStatus(reachable=True, degraded=degraded > 0, spool_depth=int(spool),
                        rejects=rejects, appended=appended)


class IngestProbe:
    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._failing = False

    async def read(self) -> IngestStatus:
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as http, \
                    http.get(self.url) as resp:
                resp.raise_for_status()
                status = parse_metrics(await resp.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not self._failing:
                log.warning("cannot read the ingester's metrics at %s: %s", self.url,
                            type(exc).__name__)
            self._failing = True
            return IngestStatus(reachable=False)
        self._failing = False
        return status
