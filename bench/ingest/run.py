"""bench/ingest: signed status callbacks from wrk on loopback against three servers in one run.

(a) bare aiohttp handler (ceiling), (b) naive INSERT-per-request, (c) `smsledger serve`.
The three run in turn, --rounds times (default 3): the ratios are taken within each round and
the median round is reported, so that a slow spell of this shared machine (seen to move every
server's figure by a quarter or more for a minute) lands on all three alike instead of on one.
Within a round, (a) and (c) run back to back, alternating which goes first; (b) runs last.
Prints requests/s, p50/p99 and the ratios, and checks every 2xx is stored (unique sids).
Bounded: --seconds per server and round (default 10), 64 connections, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
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
nthreads, counter, ok, other = 1, 0, 0, 0
function init(args)
  nthreads = tonumber(os.getenv("BENCH_THREADS"))
end
function request()
  local i = (counter * nthreads + id) % n + 1
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
  local total_ok, total_other = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_other = total_other + t:get("other")
  end
  io.write(string.format('RESULT {"requests": %d, "ok": %d, "other": %d, "errors": %d, ' ..
    '"seconds": %f, "p50_ms": %f, "p99_ms": %f, "entries": %d}\n',
    summary.requests, total_ok, total_other,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, n))
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


def write_entries(path: Path, count: int) -> None:
    validator = RequestValidator(TOKEN)
    with path.open("w") as f:
        for i in range(count):
            sid = f"SM{i:032x}"
            params = {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01",
                      "From": "+15005550006", "MessageSid": sid, "MessageStatus": "delivered",
                      "SmsSid": sid, "SmsStatus": "delivered", "To": "+14155550123"}
            f.write(f"{sid} {validator.compute_signature(PUBLIC + '/twilio/status', params)}\n")


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
         threads: int, *, timeout_s: int, deadline_s: int) -> dict[str, float]:
    """Signed status callbacks from wrk to 127.0.0.1:``port`` for ``seconds`` (a request
    unanswered after ``timeout_s`` counts as an error; wrk itself is stopped after
    ``deadline_s``); the Lua script's RESULT line (requests, 2xx, others, errors, seconds,
    p50/p99 ms)."""
    wrk_env = dict(os.environ, BENCH_ENTRIES=str(entries), BENCH_THREADS=str(threads))
    out = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
         "--timeout", f"{timeout_s}s", "-s", str(lua), f"http://127.0.0.1:{port}/twilio/status"],
        env=wrk_env, capture_output=True, text=True, check=True, timeout=deadline_s).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result: dict[str, float] = json.loads(line[len("RESULT "):])
    return result


def run_one(name: str, argv: list[str], env: dict[str, str], port: int, wrk: str,
            lua: Path, entries: Path, seconds: int, connections: int, threads: int,
            db_url: str | None) -> dict[str, float]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_up(port, proc)
        # Measured from the first request: every server starts as cold as the others.
        result = load(wrk, port, lua, entries, seconds, connections, threads, timeout_s=10,
                      deadline_s=seconds + 60)
        result["rps"] = result["ok"] / result["seconds"]
        time.sleep(0.5)  # let in-flight requests finish before counting rows
        result["stored"] = asyncio.run(stored(db_url)) if db_url else float("nan")
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="run a, b, c this many times in turn; report the median round")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    wrk = ensure_wrk()
    server = devdb.find_database(Path(".smsledger"))
    work = Path(tempfile.mkdtemp(prefix="smsledger-bench-"))
    lua = work / "status.lua"
    lua.write_text(LUA)
    entries = work / "entries.txt"
    write_entries(entries, args.entries)
    base_env = dict(os.environ, TWILIO_AUTH_TOKEN=TOKEN, SMSLEDGER_PUBLIC_URL=PUBLIC,
                    SMSLEDGER_LOG_LEVEL="WARNING")
    py = sys.executable
    plan = [("a_bare", [py, str(HERE / "baselines.py"), "bare", "--port", "18081"], 18081,
             False),
            ("b_naive", [py, str(HERE / "baselines.py"), "naive", "--port", "18082"], 18082,
             True),
            ("c_smsledger", [py, "-m", "smsledger.cli", "serve", "--port", "18083"], 18083,
             True)]
    rounds: list[dict[str, dict[str, float]]] = []
    for round_no in range(1, args.rounds + 1):
        # Fresh databases first, then a and c back to back (alternating which goes first), b
        # last: the two servers whose ratio is the target see the machine in the same state.
        dbs = {name: asyncio.run(fresh_database(server, f"smsledger_bench_{name[0]}"))
               for name, _, _, uses_db in plan if uses_db}
        order = [plan[0], plan[2]] if round_no % 2 else [plan[2], plan[0]]
        results = {}
        for name, argv, port, _ in [*order, plan[1]]:
            db_url = dbs.get(name)
            asyncio.run(checkpoint(server.url))
            env = dict(base_env, DATABASE_URL=db_url or "")
            results[name] = run_one(name, argv, env, port, wrk, lua, entries, args.seconds,
                                    args.connections, args.threads, db_url)
        results = {name: results[name] for name, *_ in plan}
        rounds.append(results)
        report(results, f"round {round_no} of {args.rounds}", args)
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
    print(f"\nbench/ingest, {title}: {args.connections} connections, {args.seconds} s each, "
          f"wrk -t{args.threads}, signed status callbacks, unique MessageSids")
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
