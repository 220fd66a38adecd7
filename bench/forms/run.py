"""bench/forms: the form parser's cost grows linearly with the number of fields.

Issue 15, finding 1: a body of 32,767 empty ``a`` fields cost 0.58 s of CPU to parse (each
repeat rebuilt the list of values) before the signature was even checked. This prints, in one
run:

1. ``parse_form`` on a 32k-field body and on a 1k-field body (the field cap lifted for the
   measurement), best of --repeat, and their ratio: close to 32 when parsing is linear (it was
   about 1,000 when quadratic) — the old quadratic grouping, kept here as the baseline, beside;
2. the server's CPU per request (``smsledger serve`` in a subprocess, its utime + stime from
   /proc) for the 64 KB attack body, which the cap refuses with 400 before anything else, next
   to a genuine signed status callback.

Usage: scripts/bench forms [--repeat N] [--requests N]. Traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "ingest"))

from run import (  # type: ignore[import-not-found]  # noqa: E402  bench/ingest/run.py's servers
    PUBLIC,
    TOKEN,
    drop_databases,
    fresh_database,
    server_argv,
    server_env,
    status_params,
    wait_up,
)

from ingest.forms import parse_form  # noqa: E402
from smsledger import devdb  # noqa: E402

DB = "smsledger_bench_forms"


def attack_body(fields: int) -> bytes:
    """The probe's body: ``fields`` empty fields all named ``a`` (32,767 fill 64 KB)."""
    return b"&".join([b"a"] * fields)


def quadratic(body: bytes) -> dict[str, object]:
    """The grouping as it was before the fix (a new list per repeat): the baseline."""
    fields: dict[str, object] = {}
    for name, value in parse_qsl(body.decode(), keep_blank_values=True):
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


def best_of(repeat: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_cost(requests: int) -> tuple[float, float, int, int]:
    """CPU seconds per request of ``smsledger serve``: the capped attack, then genuine
    callbacks; and the status codes each got."""
    server = devdb.find_database(Path(tempfile.mkdtemp(prefix="bench-forms-pg-")))
    url = asyncio.run(fresh_database(server, DB))
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-forms-")
    env = dict(server_env(), DATABASE_URL=url, SMSLEDGER_DATA_DIR=data_dir)
    proc = subprocess.Popen(server_argv("smsledger", port), env=env, cwd=ROOT)
    try:
        wait_up(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        validator = RequestValidator(TOKEN)

        def post(body: bytes, signature: str) -> int:
            conn.request("POST", "/twilio/status", body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  "X-Twilio-Signature": signature})
            resp = conn.getresponse()
            resp.read()
            return resp.status

        body = attack_body(32767)
        post(body, "forged")  # warm-up
        before = cpu_seconds(proc.pid)
        attack_status = 0
        for _ in range(requests):
            attack_status = post(body, "forged")
        attack = (cpu_seconds(proc.pid) - before) / requests
        genuine_status = 0
        forms = [status_params(f"SM{i:032x}") for i in range(requests + 1)]
        signed = [(urlencode(f).encode(),
                   validator.compute_signature(PUBLIC + "/twilio/status", f)) for f in forms]
        post(*signed[-1])  # warm-up
        before = cpu_seconds(proc.pid)
        for form_body, signature in signed[:-1]:
            genuine_status = post(form_body, signature)
        genuine = (cpu_seconds(proc.pid) - before) / requests
        conn.close()
        return attack, genuine, attack_status, genuine_status
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        asyncio.run(drop_databases(server, [DB]))
        if server.how == "private cluster" and server.cluster_dir is not None:
            devdb.PrivateCluster(server.cluster_dir).stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="best of N parses (default 20)")
    parser.add_argument("--requests", type=int, default=500,
                        help="requests of each kind sent to the server (default 500)")
    args = parser.parse_args()
    big, small = attack_body(32767), attack_body(1024)
    t_big = best_of(args.repeat, lambda: parse_form(big, max_fields=1 << 20))
    t_small = best_of(args.repeat, lambda: parse_form(small, max_fields=1 << 20))
    q_big = best_of(1, lambda: quadratic(big))
    q_small = best_of(args.repeat, lambda: quadratic(small))
    print("parse_form, cap lifted      32,767 fields   1,024 fields   ratio (linear: 32)")
    print(f"  now (linear)              {t_big * 1e3:10.2f} ms  {t_small * 1e3:10.3f} ms"
          f"   {t_big / t_small:8.1f}")
    print(f"  before (list per repeat)  {q_big * 1e3:10.2f} ms  {q_small * 1e3:10.3f} ms"
          f"   {q_big / q_small:8.1f}")
    attack, genuine, attack_status, genuine_status = server_cost(args.requests)
    print(f"smsledger serve, CPU per request over {args.requests} requests each:")
    print(f"  64 KB body of 32,767 fields (capped)  {attack * 1e3:7.3f} ms  -> {attack_status}")
    print(f"  signed status callback (baseline)     {genuine * 1e3:7.3f} ms  -> "
          f"{genuine_status}   ratio {attack / genuine:.2f}")


if __name__ == "__main__":
    main()
