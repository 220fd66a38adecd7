"""What another local account, or a hijacked process, can reach on the host: personal data
files are private whatever the umask, and the ingester's and the worker's database sessions
cannot rewrite or drop the event log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from analytics.hygiene import load_rules
from analytics.worker import WorkerConfig, run_worker
from ingest import ops
from ingest.spool import Spool
from schema import roles
from schema.private_files import secure_data_dir
from tests.conftest import post_signed, status_form
from tests.factory import T0, append, message

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask (022), under which a plain open() makes a 0644 file."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def loose_entries(root: Path) -> list[str]:
    """Every directory not 0700 and every regular file not 0600 under ``root`` (itself too)."""
    found = []
    for path in [root, *root.rglob("*")]:
        info = os.lstat(path)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode) and mode != 0o700:
            found.append(f"{path} {mode:o}")
        elif stat.S_ISREG(info.st_mode) and mode != 0o600:
            found.append(f"{path} {mode:o}")
    return found


async def test_files_made_by_the_library_are_private_under_umask_022(
        db_url: str, tmp_path: Path, loose_umask: None) -> None:
    """Not only the CLI's umask: each place that makes a file gives its mode (spool, the
    rejected-event log, the DuckDB model and its snapshots, hygiene reports)."""
    data = tmp_path / "data"
    spool = Spool(data / "spool")
    await spool.append(message(1, "+14155550100", T0))
    spool.set_aside(message(2, "+14155550101", T0)[0])
    spool.close()
    db = await asyncpg.connect(db_url)
    try:
        await append(db, message(3, "+14155550102", T0, "undelivered", 30005))
    finally:
        await db.close()
    await run_worker(WorkerConfig(database_url=db_url, data_dir=data, rules=load_rules(),
                                  once=True, hygiene_every_s=1), stop=asyncio.Event())
    made = {p.relative_to(data).parts[0] for p in data.rglob("*")}
    assert {"spool", "lake", "reports", "analytics.lake"} <= made
    assert list((data / "reports").glob("hygiene-*.csv"))
    # DuckDB's own write-ahead log and spill files take the process umask (no mode can be
    # passed to DuckDB): the CLI's umask 077 covers those, checked by the demo test below.
    loose = [e for e in loose_entries(data) if ".wal " not in e]
    assert loose == []


def test_existing_loose_files_are_tightened_at_start(tmp_path: Path, loose_umask: None) -> None:
    data = tmp_path / "data"
    (data / "reports").mkdir(parents=True)
    (data / "reports" / "hygiene-old.csv").write_text("phone\n+14155550100\n")
    (data / "snapshots").mkdir()
    os.chmod(data, 0o755)
    other = tmp_path / "data" / "notes.txt"     # not smsledger's: left alone
    other.write_text("mine")
    assert stat.S_IMODE(os.stat(data / "reports" / "hygiene-old.csv").st_mode) == 0o644
    env = dict(os.environ, SMSLEDGER_DATA_DIR=str(data), DATABASE_URL="postgresql://h/x")
    done = subprocess.run([sys.executable, "-m", "smsledger.cli", "db", "url"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert "made 4 files and directories" in done.stderr, done.stderr
    assert [e for e in loose_entries(data) if "notes.txt" not in e] == []
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o644
    assert secure_data_dir(data) == 0     # nothing left to do


def _free_block() -> int:
    """A port P with P, P+10 and P+20 free (the demo's ingester, Twilio and dashboard)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 20 > 65535:
            continue
        try:
            for p in (port + 10, port + 20):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    pytest.fail("no free block of ports")


@pytest.mark.timeout(420)
def test_the_demo_leaves_only_private_files_under_umask_022(db_url: str, tmp_path: Path,
                                                            loose_umask: None) -> None:
    """`smsledger demo` (ingester, simulator, backfill, worker, hygiene report, dashboard) run
    under umask 022: every directory it leaves under the data dir is 0700, every file 0600."""
    data = tmp_path / "data"
    env = dict(os.environ, DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(data))
    env.pop("SMSLEDGER_SHOW_NUMBERS", None)
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "smsledger.cli", "demo", "--rate", "20",
             "--port", str(_free_block())], env=env, cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT)
        try:
            # Until every kind of file is there: the model's Parquet files, and a hygiene
            # report (whole numbers) after the first rollup; then SIGTERM, as Ctrl-C would.
            deadline = time.monotonic() + 300
            while not (list((data / "reports").glob("hygiene-*.csv"))
                       and list((data / "lake").rglob("*.parquet"))
                       and "dashboard: http://127.0.0.1:" in log.read_text(errors="replace")):
                assert demo.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.5)
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(timeout=60) == 0, log.read_text(errors="replace")[-3000:]
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    made = {p.relative_to(data).parts[0] for p in data.rglob("*")}
    assert {"lake", "reports", "analytics.lake"} <= made, made
    assert list((data / "reports").glob("hygiene-*.csv")), "the demo wrote no hygiene report"
    assert loose_entries(data) == []


# -- database privilege -----------------------------------------------------------------------

FORBIDDEN = [
    "UPDATE events SET type = 'x'",
    "DELETE FROM events",
    "TRUNCATE events",
    "DROP TABLE events",
    "DROP TRIGGER events_no_update_delete ON events",
    "ALTER TABLE events DISABLE TRIGGER ALL",
    "DROP FUNCTION events_refuse_change() CASCADE",
    "ALTER TABLE events OWNER TO CURRENT_USER",
    "CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN NEW; END $$",
]


async def assert_append_and_read_only(conn: asyncpg.Connection, role: str) -> None:
    assert await conn.fetchval("SELECT current_user") == role
    assert await conn.fetchval("SELECT count(*) FROM events") >= 1      # it reads
    allowed = []
    for statement in FORBIDDEN:
        try:
            await conn.execute(statement)
        except asyncpg.InsufficientPrivilegeError:
            continue
        allowed.append(statement)
    assert allowed == []
    # Going back to the default role leads back to the same role, not to the owner.
    await conn.execute("RESET ROLE")
    await conn.execute("RESET ALL")
    assert await conn.fetchval("SELECT current_user") == role
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("UPDATE events SET type = 'x'")


async def test_serve_connection_cannot_update_delete_or_drop(
        ingest: TestClient[object, object], db: asyncpg.Connection) -> None:
    form = status_form("SM" + "5" * 32, "delivered")
    assert (await post_signed(ingest, "/twilio/status", form))[0] == 200   # it appends
    pool = ingest.server.app[ops.POOL]
    async with pool.acquire() as conn:
        await assert_append_and_read_only(conn, roles.INGEST_ROLE)
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    assert await db.fetchval("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass "
                             "AND tgenabled = 'O'") == 2


async def test_worker_connection_cannot_update_delete_or_drop_but_owns_the_lake_schema(
        db_url: str, db: asyncpg.Connection) -> None:
    await append(db, message(1, "+14155550100", T0))
    conn = await roles.connect_as(db_url, roles.WORKER_ROLE)
    try:
        await assert_append_and_read_only(conn, roles.WORKER_ROLE)
        assert await conn.fetchval("SELECT pg_try_advisory_lock(42)")     # leader lock
        # The DuckLake catalog's schema: the worker creates, changes and drops its tables.
        await conn.execute("CREATE TABLE smsledger_lake.probe (x int)")
        await conn.execute("INSERT INTO smsledger_lake.probe VALUES (1)")
        await conn.execute("ALTER TABLE smsledger_lake.probe ADD COLUMN y text")
        reader = await roles.connect_as(db_url, roles.READER_ROLE)
        try:   # readers of the model see the worker's tables and change nothing
            assert await reader.fetchval("SELECT x FROM smsledger_lake.probe") == 1
            for statement in ("INSERT INTO smsledger_lake.probe VALUES (2)",
                              "DROP TABLE smsledger_lake.probe", "SELECT 1 FROM events"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await reader.execute(statement)
        finally:
            await reader.close()
        await conn.execute("DROP TABLE smsledger_lake.probe")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.probe (x int)")
    finally:
        await conn.close()


async def test_a_database_without_the_roles_is_a_clear_error(db_url: str) -> None:
    with pytest.raises(roles.RoleMissing, match="smsledger migrate"):
        await roles.connect_as(db_url, "smsledger_no_such_role")


def test_a_libpq_client_takes_the_role_from_the_url(db_url: str) -> None:
    """What DuckDB's postgres / DuckLake attach uses: libpq, here through psql."""
    url = roles.libpq_url(db_url, roles.READER_ROLE)
    done = subprocess.run(["psql", url, "-Atc", "SELECT current_user"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.stdout.strip() == roles.READER_ROLE, done.stderr
    done = subprocess.run(["psql", url, "-Atc", "SELECT count(*) FROM events"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0 and "permission denied" in done.stderr
