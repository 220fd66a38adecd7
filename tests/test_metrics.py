"""/metrics is Prometheus text that Prometheus's own checker accepts and its client parses back
to the values kept: big counters with every digit, label values escaped, histograms whole."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ingest.metrics import IngestMetrics
from tests.conftest import post_signed, status_form


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_counter_past_ten_million_keeps_every_digit() -> None:
    metrics = IngestMetrics()
    metrics.appended.labels(type="message.status").inc(12_345_679)
    metrics.appended.labels(type="message.status").inc()
    metrics.duplicates.inc(98_765_432)
    text = metrics.render()
    got = samples(text)
    assert got[("smsledger_events_appended_total", (("type", "message.status"),))] == 12_345_680
    assert got[("smsledger_events_duplicate_total", ())] == 98_765_432
    # The old exposition printed 1.23457e+07: rate() then moved in steps of 10.
    assert 'smsledger_events_appended_total{type="message.status"} 1.234568e+07' in text


def test_label_values_are_escaped() -> None:
    metrics = IngestMetrics()
    odd = 'say "hi"\\ then\nbye'
    metrics.rejects.labels(reason=odd).inc(3)
    text = metrics.render()
    assert '{reason="say \\"hi\\"\\\\ then\\nbye"}' in text
    assert samples(text)[("smsledger_requests_rejected_total", (("reason", odd),))] == 3


def test_fast_histogram_counts_like_a_histogram() -> None:
    metrics = IngestMetrics()
    for value in (0.0005, 0.001, 0.003, 0.003, 7.0):
        metrics.ack_latency.observe(value)
    got = samples(metrics.render())
    bucket = "smsledger_ack_latency_seconds_bucket"
    assert got[(bucket, (("le", "0.001"),))] == 2       # le: at or below the bound
    assert got[(bucket, (("le", "0.005"),))] == 4
    assert got[(bucket, (("le", "5.0"),))] == 4
    assert got[(bucket, (("le", "+Inf"),))] == 5
    assert got[("smsledger_ack_latency_seconds_count", ())] == 5 == metrics.ack_latency.count
    assert abs(got[("smsledger_ack_latency_seconds_sum", ())] - 7.0075) < 1e-9


async def test_metrics_pass_promtool(ingest: TestClient[object, object]) -> None:
    for n in range(3):
        await post_signed(ingest, "/twilio/status", status_form(f"SM{n:032d}", "delivered"))
    await post_signed(ingest, "/twilio/status", {"MessageSid": "SM1"})   # a refusal
    response = await ingest.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    got = samples(text)
    assert got[("smsledger_events_appended_total", (("type", "message.status"),))] == 3
    assert got[("smsledger_ack_latency_seconds_count", ())] == 3
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test installs Debian's prometheus package"
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True,
        text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
