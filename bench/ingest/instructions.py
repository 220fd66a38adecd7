"""bench/ingest/instructions.py: CPU instructions per request, (a) bare aiohttp vs (c) smsledger.

The wrk figures of run.py move with the machine (a shared machine's slow spells change every
server's requests/s by a quarter or more). Instructions do not: each server runs under
valgrind's callgrind, is warmed up, and then counts the instructions it executes while wrk sends
it signed status callbacks for --seconds (64 connections, loopback only); the count divided by
the 2xx answers is printed for both, with their ratio. Slower than run.py (callgrind runs a
program about fifty times slower), and blind to what instructions cannot show (cache misses,
PostgreSQL's own CPU, time spent waiting): a complement to run.py, not a replacement.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as bench  # bench/ingest/run.py: the same traffic, servers and database set-up

from smsledger import devdb

PORT = 18084


def instructions_of(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def measure(name: str, argv: list[str], env: dict[str, str], work: Path, wrk: str,
            seconds: int, connections: int) -> tuple[int, int]:
    """(instructions, 2xx answers) for one server under callgrind."""
    out = work / f"callgrind.{name}"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                             *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        bench.wait_up(PORT, proc, within_s=180)  # starting under callgrind takes a while
        lua, entries = work / "status.lua", work / "entries.txt"
        warm_up = bench.load(wrk, PORT, lua, entries, 3, connections, 1, timeout_s=30,
                             deadline_s=120)  # not counted
        time.sleep(2)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True,
                       capture_output=True)
        # Past the warm-up's sids: counted requests are new events, not duplicates.
        result = bench.load(wrk, PORT, lua, entries, seconds, connections, 1, timeout_s=30,
                            deadline_s=seconds + 120, offset=int(warm_up["span"]))
        time.sleep(3)  # the last answers leave
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True,
                       capture_output=True)
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    dumps = sorted(work.glob(f"callgrind.{name}.*"))  # the --dump file: counted from --zero
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {name}")
    return instructions_of(dumps[0]), int(result["ok"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench/ingest/instructions.py needs valgrind (Debian: apt-get install valgrind)")
    wrk = bench.ensure_wrk()
    server = devdb.find_database(Path(".smsledger"))
    work = Path(tempfile.mkdtemp(prefix="smsledger-instr-"))
    try:
        (work / "status.lua").write_text(bench.LUA)
        bench.write_entries(work / "entries.txt", 100_000)
        env = bench.server_env()
        db_url = asyncio.run(bench.fresh_database(server, "smsledger_bench_i"))
        counts = {}
        for name, argv, server_env in [
                ("a_bare", bench.server_argv("bare", PORT), env),
                ("c_smsledger", bench.server_argv("smsledger", PORT),
                 dict(env, DATABASE_URL=db_url))]:
            counts[name] = measure(name, argv, server_env, work, wrk, args.seconds,
                                   args.connections)
        asyncio.run(bench.drop_databases(server, ["smsledger_bench_i"]))
    finally:
        shutil.rmtree(work)
    print(f"\nbench/ingest instructions: callgrind, {args.connections} connections, "
          f"{args.seconds} s of signed status callbacks per server")
    print(f"{'server':<14}{'2xx':>9}{'instructions/request':>22}")
    per = {}
    for name, (instructions, ok) in counts.items():
        per[name] = instructions / max(ok, 1)
        print(f"{name:<14}{ok:>9}{per[name]:>22,.0f}")
    print(f"smsledger / bare = {per['c_smsledger'] / per['a_bare']:.2f}x instructions per "
          "request (lower is better)")


if __name__ == "__main__":
    main()
