"""What ``/metrics`` shows, on prometheus-client's registry and text exposition.

Each app has its own registry (tests run many apps in one process). Counters and gauges are
prometheus-client's own: they change per commit batch, per refusal or per scrape, never per
request. The figures kept per request are custom collectors the registry reads only when
scraped: the acknowledgement latency a ``FastHistogram`` (a list of bucket counts that
``observe`` bumps with one bisect), the signatures by secret a ``FastCounter`` (a dict).
prometheus-client's own take a lock, and its Histogram walks its buckets, on every observation;
``scripts/bench ingest/instructions`` counts the instructions per request.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# What /metrics answers with: the text format generate_latest writes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class FastHistogram(Collector):
    """A histogram without labels, cheap to observe: the event loop is its only writer, so it
    needs no lock, and the cumulative counts are added up at scrape time."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.buckets = name, documentation, buckets
        self._counts = [0] * (len(buckets) + 1)   # the last one: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def collect(self) -> Iterator[Metric]:
        counts = self._counts[:]   # one consistent copy: nothing runs between these lines
        cumulative = list(itertools.accumulate(counts))
        bounds = [repr(float(b)) for b in self.buckets] + ["+Inf"]   # as Histogram spells them
        yield HistogramMetricFamily(self.name, self.documentation,
                                    buckets=list(zip(bounds, cumulative, strict=True)),
                                    sum_value=self._sum)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)


class FastCounter(Collector):
    """A counter with one label, bumped per request: a dict of floats, no lock (the event loop
    is its only writer)."""

    def __init__(self, name: str, documentation: str, label: str,
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._values: dict[str, float] = {}
        registry.register(self)

    def inc(self, label_value: str, amount: float = 1.0) -> None:
        self._values[label_value] = self._values.get(label_value, 0.0) + amount

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self._values.items()):
            family.add_metric([value], count)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=[self.label])


class IngestMetrics:
    """The ingester's metrics, in a registry of their own. The event loop is the only writer."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.appended = Counter("smsledger_events_appended", "Events stored, by type.",
                                ["type"], registry=registry)
        self.duplicates = Counter("smsledger_events_duplicate",
                                  "Events already stored (retries, duplicated callbacks).",
                                  registry=registry)
        self.rejects = Counter("smsledger_requests_rejected", "Requests refused, by reason.",
                               ["reason"], registry=registry)
        self.signatures = FastCounter("smsledger_webhook_signatures",
                                      "Webhook signatures accepted, by the secret that matched "
                                      "(auth_token, auth_token_secondary, shared_key).",
                                      "secret", registry)
        self.batch_size = Histogram("smsledger_commit_batch_events",
                                    "Events per group-commit transaction.",
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
                                    registry=registry)
        self.ack_latency = FastHistogram("smsledger_ack_latency_seconds",
                                         "Time from request received to durable answer.",
                                         (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1.0, 2.5, 5.0), registry)
        self.queue_depth = Gauge("smsledger_commit_queue_depth",
                                 "Requests waiting for the group commit.", registry=registry)
        self.db_errors = Counter("smsledger_commit_failures",
                                 "Group commits PostgreSQL did not take (spooled or refused).",
                                 registry=registry)
        self.spooled = Counter("smsledger_events_spooled",
                               "Events acknowledged from the local spool (PostgreSQL down).",
                               registry=registry)
        self.replayed = Counter("smsledger_events_replayed",
                                "Spooled events moved into PostgreSQL.", registry=registry)
        self.spool_bytes = Gauge("smsledger_spool_bytes", "Bytes waiting in the spool.",
                                 registry=registry)
        self.spool_events = Gauge("smsledger_spool_events",
                                  "Events waiting in the spool (spooled by this process).",
                                  registry=registry)
        self.degraded = Gauge("smsledger_degraded",
                              "1 while PostgreSQL is failing or the spool is not empty.",
                              registry=registry)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
