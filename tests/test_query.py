"""`smsledger query`: read-only SQL on the model; every kind of write or escape is refused with
exit 2 and never executed; the connection itself cannot write even if the check missed a case."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import duckdb
import pytest

from analytics.hygiene import load_rules
from analytics.snapshot import open_snapshot
from analytics.worker import WorkerConfig, run_worker
from smsledger.cli import main
from tests.factory import T0, append, message

REFUSED = {
    "write": "DELETE FROM numbers",
    "update": "UPDATE messages SET status = 'read'",
    "create": "CREATE TABLE stolen AS SELECT * FROM numbers",
    "attach": "ATTACH 'postgres:dbname=x' AS other",
    "copy": "COPY (SELECT * FROM numbers) TO '/tmp/smsledger-query-leak.csv'",
    "install": "INSTALL httpfs",
    "load": "LOAD 'httpfs'",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_parquet": "SELECT count(*) FROM read_parquet('lake/**/*.parquet')",
    "glob": "SELECT * FROM glob('/etc/*')",
    "file as table": "SELECT * FROM '/etc/passwd.csv'",
    "lake upkeep": "SELECT * FROM ducklake_expire_snapshots('model', dry_run => true)",
    "two statements": "SELECT 1; DELETE FROM numbers",
    "sql as text": "SELECT * FROM query('DELETE FROM numbers')",
}


def applied(data_dir: Path) -> int:
    con = open_snapshot(data_dir)
    try:
        row = con.execute("SELECT events FROM rollup_cursor").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


@pytest.fixture
async def model(db_url: str, db: asyncpg.Connection, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    await append(db, [e for n in range(12) for e in message(n, f"+1415555{n % 4:04d}", T0)])
    config = WorkerConfig(database_url=db_url, data_dir=tmp_path, rules=load_rules(),
                          once=True, hygiene_every_s=0)
    deadline = time.monotonic() + 60
    # The gap-free horizon is cluster-wide: another session's open transaction on a shared
    # server can hold a round back, so roll up until everything is in.
    await run_worker(config)
    while applied(tmp_path) < 36:
        assert time.monotonic() < deadline, "the rollup did not catch up within 60 s"
        await asyncio.sleep(0.1)
        await run_worker(config)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    return tmp_path


def test_query_formats(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT to_number, count(*) AS n FROM message_facts GROUP BY 1 ORDER BY 1"
    assert main(["query", sql, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"to_number": f"+1415555{k:04d}", "n": 3} for k in range(4)]
    assert main(["query", sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["to_number,n"] + [
        f"+1415555{k:04d},3" for k in range(4)]
    assert main(["query", "SELECT verdict, sends FROM numbers ORDER BY phone LIMIT 1"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["verdict", "sends"] and "(1 row)" in table
    assert main(["query", "DESCRIBE messages"]) == 0
    assert "message_sid" in capsys.readouterr().out


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_query_refuses_and_never_executes(kind: str, model: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    con = open_snapshot(model)
    before = con.execute("SELECT (SELECT count(*) FROM numbers), (SELECT count(*) FROM "
                         "messages WHERE status = 'read')").fetchone()
    con.close()
    assert main(["query", REFUSED[kind]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error:")
    assert any(why in err for why in ("not allowed", "one statement", "looks like a file")), err
    assert "Traceback" not in err
    con = open_snapshot(model)
    assert con.execute("SELECT (SELECT count(*) FROM numbers), (SELECT count(*) FROM "
                       "messages WHERE status = 'read')").fetchone() == before
    con.close()
    assert not Path("/tmp/smsledger-query-leak.csv").exists()


def test_the_readers_connection_cannot_write_even_unchecked(model: Path) -> None:
    con = open_snapshot(model)
    for statement in ("DELETE FROM numbers", "CREATE TABLE x (a INT)",
                      "SELECT * FROM read_csv('/etc/passwd')",
                      "SET enable_external_access = true"):
        with pytest.raises(duckdb.Error):
            con.execute(statement)
    assert con.execute("SELECT count(*) FROM numbers").fetchone() == (4,)
    con.close()


def test_query_before_any_rollup_is_a_clear_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMSLEDGER_DATA_DIR", str(tmp_path))
    assert main(["query", "SELECT 1"]) == 2
    assert "no analytics snapshot" in capsys.readouterr().err
