"""bench/ingest/metrics.py: instructions of the ingester's per-request metrics work.

Each webhook request observes its acknowledgement latency and counts the secret that signed
it. Under valgrind's callgrind, N requests' worth of those calls run (a) on ingest.metrics'
custom collectors (FastHistogram, FastCounter) and (b) on prometheus-client's own Histogram and
Counter (``labels(...).inc()``), each minus the same loop doing nothing, divided by N: the
figure per request, and the ratio. Exact (instructions, not time), so it holds on a busy machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CODE = r'''
import sys
from prometheus_client import CollectorRegistry, Counter, Histogram
from ingest.metrics import IngestMetrics
n, kind = int(sys.argv[1]), sys.argv[2]
values = [0.0004 * (i % 50) for i in range(1000)]
m = IngestMetrics()
if kind == "custom":
    observe, inc = m.ack_latency.observe, m.signatures.inc
    for i in range(n):
        observe(values[i % 1000]); inc("auth_token")
elif kind == "library":
    registry = CollectorRegistry()
    latency = Histogram("ack", "", buckets=m.ack_latency.buckets, registry=registry)
    signatures = Counter("signatures", "", ["secret"], registry=registry)
    observe = latency.observe
    for i in range(n):
        observe(values[i % 1000]); signatures.labels(secret="auth_token").inc()
else:
    for i in range(n):
        values[i % 1000]
'''


def instructions(n: int, kind: str) -> int:
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", CODE, str(n), kind], check=True,
                       capture_output=True)
        for line in out.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench/ingest/metrics.py needs valgrind (Debian: apt-get install valgrind)")
    idle = instructions(args.requests, "idle")
    per = {kind: (instructions(args.requests, kind) - idle) / args.requests
           for kind in ("custom", "library")}
    print(f"bench/ingest metrics: instructions per request for the latency histogram and the "
          f"signature counter, {args.requests:,} requests under callgrind")
    print(f"  (a) ingest.metrics FastHistogram + FastCounter   {per['custom']:>9,.0f}")
    print(f"  (b) prometheus-client Histogram + Counter.labels {per['library']:>9,.0f}")
    print(f"  (a) / (b) = {per['custom'] / per['library']:.2f}")


if __name__ == "__main__":
    main()
