"""Prometheus text exposition for the few figures the ingester keeps, with no dependency."""

from __future__ import annotations

import bisect
from collections import defaultdict


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._values[tuple(sorted(labels.items()))] += amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self._values:
            out.append(f"{self.name} 0")
        for labels, v in sorted(self._values.items()):
            out.append(f"{self.name}{_labels(labels)} {v:g}")
        return out


class Gauge(Counter):
    def set(self, value: float, **labels: str) -> None:
        self._values[tuple(sorted(labels.items()))] = value

    def render(self) -> list[str]:
        return [line.replace(" counter", " gauge") if line.startswith("# TYPE") else line
                for line in super().render()]


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help, buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0
        self._n = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value
        self._n += 1

    @property
    def count(self) -> int:
        return self._n

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip(self.buckets, self._counts, strict=False):
            running += n
            out.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self._n}')
        out.append(f"{self.name}_sum {self._sum:g}")
        out.append(f"{self.name}_count {self._n}")
        return out


class IngestMetrics:
    """What /metrics shows. One instance per app; the event loop is the only writer."""

    def __init__(self) -> None:
        self.appended = Counter("smsledger_events_appended_total",
                                "Events stored, by type.")
        self.duplicates = Counter("smsledger_events_duplicate_total",
                                  "Events already stored (retries, duplicated callbacks).")
        self.rejects = Counter("smsledger_requests_rejected_total",
                               "Requests refused, by reason.")
        self.signatures = Counter("smsledger_webhook_signatures_total",
                                  "Webhook signatures accepted, by the secret that matched "
                                  "(auth_token, auth_token_secondary, shared_key).")
        self.batch_size = Histogram("smsledger_commit_batch_events",
                                    "Events per group-commit transaction.",
                                    (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
        self.ack_latency = Histogram("smsledger_ack_latency_seconds",
                                     "Time from request received to durable answer.",
                                     (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0))
        self.queue_depth = Gauge("smsledger_commit_queue_depth",
                                 "Requests waiting for the group commit.")
        self.db_errors = Counter("smsledger_commit_failures_total",
                                 "Group commits PostgreSQL did not take (spooled or refused).")
        self.spooled = Counter("smsledger_events_spooled_total",
                               "Events acknowledged from the local spool (PostgreSQL down).")
        self.replayed = Counter("smsledger_events_replayed_total",
                                "Spooled events moved into PostgreSQL.")
        self.spool_bytes = Gauge("smsledger_spool_bytes", "Bytes waiting in the spool.")
        self.spool_events = Gauge("smsledger_spool_events",
                                  "Events waiting in the spool (spooled by this process).")
        self.degraded = Gauge("smsledger_degraded",
                              "1 while PostgreSQL is failing or the spool is not empty.")

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.appended, self.duplicates, self.rejects, self.signatures,
                       self.batch_size,
                       self.ack_latency, self.queue_depth, self.db_errors, self.spooled,
                       self.replayed, self.spool_bytes, self.spool_events, self.degraded):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
