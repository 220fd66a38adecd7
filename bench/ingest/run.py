"""bench/ingest: signed status callbacks from wrk on loopback against three servers in one run.

(a) bare aiohttp handler (ceiling), (b) naive INSERT-per-request, (c) `smsledger serve`.
This shared machine has slow spells that move every server's figure by half or more within
seconds, so the three are not measured one after the other: all three stay up for a round, and
wrk drives them in turn in short slices (--slice seconds; (a) and (c) back to back, alternating
which goes first, (b) last), until each has had --seconds. A server's figures for a round are
its slices together (2xx over time; p50/p99 from the slices' merged latency histograms), and
the ratios are taken within each round; the median round of --rounds (default 3) is reported.
Prints requests/s, p50/p99 and the ratios, and checks every 2xx is stored (each request carries
a MessageSid of its own across all slices). Bounded: --seconds per server and round (default
10), 64 connections, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import asyncpg
from twilio.request_validator import RequestValidator

from schema.migrate import migrate_url
from smsledger import devdb

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token-0123456789abcdef"
PUBLIC = "https://sms.example.test"
LUA = r"""
local entries = {}
local n = 0
for line in io.lines(os.getenv("BENCH_ENTRIES")) do
  n = n + 1
  entries[n] = line
end
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
-- Globals, not locals: thread:set/get reach only a thread's globals.
nthreads, offset, counter, ok, other = 1, 0, 0, 0, 0
function init(args)
  nthreads = tonumber(os.getenv("BENCH_THREADS"))
  offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
end
function request()
  local i = (offset + counter * nthreads + id) % n + 1
  counter = counter + 1
  local sid, sig = entries[i]:match("([^ ]+) ([^ ]+)")
  local body = "AccountSid=AC00000000000000000000000000000000&ApiVersion=2010-04-01" ..
    "&From=%2B15005550006&MessageSid=" .. sid .. "&MessageStatus=delivered" ..
    "&SmsSid=" .. sid .. "&SmsStatus=delivered&To=%2B14155550123"
  return wrk.format("POST", "/twilio/status",
    {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = sig}, body)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local total_ok, total_other, most = 0, 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_other = total_other + t:get("other")
    most = math.max(most, t:get("counter"))
  end
  -- "span": how many entries from the offset the requests made (sent or not) may have used.
  io.write(string.format('RESULT {"requests": %d, "ok": %d, "other": %d, "errors": %d, ' ..
    '"seconds": %f, "p50_ms": %f, "p99_ms": %f, "entries": %d, "span": %d}\n',
    summary.requests, total_ok, total_other,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, n, most * #threads))
  -- Every latency seen (microseconds) and how often, so that slices can be merged.
  local hist = {}
  for i = 1, #latency do
    local value, count = latency(i)
    hist[#hist + 1] = string.format("%d:%d", value, count)
  end
  io.write("HIST " .. table.concat(hist, " ") .. "\n")
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                       capture_output=True)
        if shutil.which("wrk") is None:
            subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                           capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench/ingest needs wrk (Debian: apt-get install wrk)")
    return found


def status_params(sid: str) -> dict[str, str]:
    """The status callback every bench sends (the Lua script writes the same form)."""
    return {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "From": "+15005550006",
            "MessageSid": sid, "MessageStatus": "delivered", "SmsSid": sid,
            "SmsStatus": "delivered", "To": "+14155550123"}


def write_entries(path: Path, count: int) -> None:
    validator = RequestValidator(TOKEN)
    with path.open("w") as f:
        for i in range(count):
            sid = f"SM{i:032x}"
            signature = validator.compute_signature(PUBLIC + "/twilio/status", status_params(sid))
            f.write(f"{sid} {signature}\n")


def server_env() -> dict[str, str]:
    """The environment every server under test runs in (its DATABASE_URL added per server)."""
    return dict(os.environ, TWILIO_AUTH_TOKEN=TOKEN, SMSLEDGER_PUBLIC_URL=PUBLIC,
                SMSLEDGER_LOG_LEVEL="WARNING")


def server_argv(kind: str, port: int) -> list[str]:
    """How a server under test starts: ``bare`` or ``naive`` (baselines.py), or ``smsledger``."""
    if kind == "smsledger":
        return [sys.executable, "-m", "smsledger.cli", "serve", "--port", str(port)]
    return [sys.executable, str(HERE / "baselines.py"), kind, "--port", str(port)]


async def fresh_database(server: devdb.Database, name: str) -> str:
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = server.url_for(name)
    await migrate_url(url)
    return url


async def drop_databases(server: devdb.Database, names: list[str]) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def checkpoint(url: str) -> None:
    """Start each server's run from a quiet PostgreSQL: the previous run's writes flushed, so
    no checkpoint of someone else's data lands in the middle of the next measurement."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def stored(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def wait_up(port: int, proc: subprocess.Popen[bytes], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):  # noqa: S310
                return
        except OSError as exc:
            if getattr(exc, "code", None) in (404, 405):
                return
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def load(wrk: str, port: int, lua: Path, entries: Path, seconds: int, connections: int,
         threads: int, *, timeout_s: int, deadline_s: int, offset: int = 0) -> dict[str, Any]:
    """Signed status callbacks from wrk to 127.0.0.1:``port`` for ``seconds``, starting at
    entry ``offset`` (a request unanswered after ``timeout_s`` counts as an error; wrk itself
    is stopped after ``deadline_s``); the Lua script's RESULT line (requests, 2xx, others,
    errors, seconds, p50/p99 ms) and its latency histogram (``hist``: µs -> count)."""
    wrk_env = dict(os.environ, BENCH_ENTRIES=str(entries), BENCH_THREADS=str(threads),
                   BENCH_OFFSET=str(offset))
    out = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
         "--timeout", f"{timeout_s}s", "-s", str(lua), f"http://127.0.0.1:{port}/twilio/status"],
        env=wrk_env, capture_output=True, text=True, check=True, timeout=deadline_s).stdout
    lines = out.splitlines()
    line = next(ln for ln in lines if ln.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT "):])
    hist = next(ln for ln in lines if ln.startswith("HIST"))
    result["hist"] = collections.Counter(
        {int(value): int(count) for value, count in
         (pair.split(":") for pair in hist[len("HIST"):].split())})
    return result


def percentile_ms(hist: collections.Counter[int], p: float) -> float:
    """The ``p``-th percentile of a latency histogram (µs -> count), in ms, as wrk takes it."""
    rank = round(p / 100 * sum(hist.values()) + 0.5)
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value / 1000
    return float("nan")


@dataclasses.dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    db_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    next_entry: int = 0   # where its next slice starts among the entries (sids never repeat)
    slices: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.argv, env=dict(env, DATABASE_URL=self.db_url or ""),
                                     stdout=subprocess.DEVNULL)
        wait_up(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def drive(self, wrk: str, lua: Path, entries: Path, seconds: int, connections: int,
              threads: int) -> None:
        """One slice of load."""
        result = load(wrk, self.port, lua, entries, seconds, connections, threads,
                      timeout_s=10, deadline_s=seconds + 60, offset=self.next_entry)
        # Past every entry a request was made from, answered or not, on every wrk thread.
        self.next_entry += int(result["span"])
        self.slices.append(result)

    def figures(self) -> dict[str, float]:
        """This round's slices together."""
        hist: collections.Counter[int] = collections.Counter()
        for r in self.slices:
            hist.update(r["hist"])
        totals = {key: float(sum(r[key] for r in self.slices))
                  for key in ("requests", "ok", "other", "errors", "seconds")}
        return dict(totals, rps=totals["ok"] / totals["seconds"], slices=len(self.slices),
                    p50_ms=percentile_ms(hist, 50), p99_ms=percentile_ms(hist, 99),
                    stored=asyncio.run(stored(self.db_url)) if self.db_url else float("nan"))


def slice_lengths(seconds: int, slice_s: int) -> list[int]:
    """``seconds`` cut into slices of ``slice_s`` (the last one takes the remainder)."""
    lengths = [slice_s] * (seconds // slice_s)
    if seconds % slice_s:
        lengths.append(seconds % slice_s)
    return lengths


def run_round(servers: list[Server], env: dict[str, str], wrk: str, lua: Path, entries: Path,
              args: argparse.Namespace, server_url: str) -> dict[str, dict[str, float]]:
    """All servers up at once, driven in turn slice by slice; their figures."""
    a, b, c = servers
    try:
        for server in servers:
            server.start(env)
        for k, seconds in enumerate(slice_lengths(args.seconds, args.slice)):
            # (a) and (c) back to back, alternating which goes first; (b) last. Each slice
            # starts from a quiet PostgreSQL: the previous slice's writes flushed.
            for server in ([a, c, b] if k % 2 == 0 else [c, a, b]):
                asyncio.run(checkpoint(server_url))
                server.drive(wrk, lua, entries, seconds, args.connections, args.threads)
        time.sleep(0.5)  # let in-flight requests finish before counting rows
        for server in servers:
            if server.next_entry > args.entries:
                print(f"{server.name} went through all {args.entries} sids and reused some: "
                      "its durability check is a lower bound (raise --entries)")
    finally:
        for server in servers:
            server.stop()
    return {server.name: server.figures() for server in servers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10,
                        help="load per server and round, in slices (default 10)")
    parser.add_argument("--slice", type=int, default=2,
                        help="seconds of load per server before the next one's turn (default 2)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--entries", type=int, default=300_000,
                        help="distinct signed callbacks (MessageSids) to send")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of a, b, c; the median round is reported")
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1 or args.slice < 1:
        parser.error("--rounds, --seconds and --slice must be at least 1")
    wrk = ensure_wrk()
    server = devdb.find_database(Path(".smsledger"))
    work = Path(tempfile.mkdtemp(prefix="smsledger-bench-"))
    lua = work / "status.lua"
    lua.write_text(LUA)
    entries = work / "entries.txt"
    write_entries(entries, args.entries)
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        for round_no in range(1, args.rounds + 1):
            servers = [
                Server("a_bare", server_argv("bare", 18081), 18081),
                Server("b_naive", server_argv("naive", 18082), 18082,
                       asyncio.run(fresh_database(server, "smsledger_bench_b"))),
                Server("c_smsledger", server_argv("smsledger", 18083), 18083,
                       asyncio.run(fresh_database(server, "smsledger_bench_c")))]
            results = run_round(servers, server_env(), wrk, lua, entries, args, server.url)
            rounds.append(results)
            report(results, f"round {round_no} of {args.rounds}", args)
    finally:
        shutil.rmtree(work)
        asyncio.run(drop_databases(server, ["smsledger_bench_b", "smsledger_bench_c"]))
    ranked = sorted(rounds, key=lambda r: r["c_smsledger"]["rps"] / r["a_bare"]["rps"])
    report(ranked[len(ranked) // 2], f"median round of {args.rounds} (by smsledger / bare)",
           args)
    print("smsledger / bare by round: " + ", ".join(
        f"{r['c_smsledger']['rps'] / r['a_bare']['rps']:.2f}x" for r in rounds))
    durable = all(every_2xx_stored(r[name], args.entries)
                  for r in rounds for name in ("b_naive", "c_smsledger"))
    print(f"every 2xx durable in every round: {'yes' if durable else 'NO'}")


def every_2xx_stored(result: dict[str, float], entries: int) -> bool:
    """At least as many rows as 2xx answers (each sid is unique up to ``entries``)."""
    return result["stored"] >= min(result["ok"], entries)


def report(results: dict[str, dict[str, float]], title: str, args: argparse.Namespace) -> None:
    print(f"\nbench/ingest, {title}: {args.connections} connections, {args.seconds} s each "
          f"in {args.slice}-s slices, wrk -t{args.threads}, signed status callbacks, "
          "unique MessageSids")
    print(f"{'server':<14}{'2xx/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'2xx':>9}{'non-2xx':>9}"
          f"{'stored':>9}")
    for name, r in results.items():
        print(f"{name:<14}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['ok']:>9.0f}{r['other']:>9.0f}{r['stored']:>9.0f}")
    a, b, c = (results[k]["rps"] for k in ("a_bare", "b_naive", "c_smsledger"))
    print(f"smsledger / bare  = {c / a:.2f}x   (target >= 0.6)")
    print(f"smsledger / naive = {c / b:.2f}x   (target >= 2.5)")
    p99_a, p99_c = results["a_bare"]["p99_ms"], results["c_smsledger"]["p99_ms"]
    print(f"smsledger p99     = {p99_c:.2f} ms (target <= 10; bare's own p99: {p99_a:.2f} ms, "
          f"{p99_c / p99_a:.2f}x)")
    # Little's law: with every connection waiting for its answer, the mean latency is fixed by
    # the rate. A p99 target below the bare server's own p99 is out of reach of any server
    # that does more than it does.
    print(f"mean latency      = connections / 2xx/s: bare {args.connections / a * 1000:.2f} ms, "
          f"smsledger {args.connections / c * 1000:.2f} ms")
    for name in ("b_naive", "c_smsledger"):
        r = results[name]
        if r["ok"] > args.entries:
            print(f"{name}: more 2xx than unique sids; durability check is a lower bound")
        durable = every_2xx_stored(r, args.entries)
        print(f"{name}: every 2xx durable: {'yes' if durable else 'NO'} "
              f"(2xx {r['ok']:.0f}, rows {r['stored']:.0f}; rows may exceed 2xx by requests "
              "still in flight when wrk stopped)")


if __name__ == "__main__":
    main()
