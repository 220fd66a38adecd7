"""The README's commands start a private PostgreSQL when none is reachable."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

import asyncpg

from schema.migrate import migrate_url
from smsledger import devdb


def test_private_cluster_when_no_server_answers(tmp_path: Path) -> None:
    db = devdb.find_database(tmp_path, environ={}, probe=("127.0.0.1", devdb.free_port()))
    assert db.how == "private cluster"
    try:
        async def use() -> int:
            await devdb.ensure_database(db.url, "smsledger")
            await migrate_url(db.url_for("smsledger"))
            conn = await asyncpg.connect(db.url_for("smsledger"))
            try:
                return int(await conn.fetchval("SELECT count(*) FROM events"))
            finally:
                await conn.close()

        assert asyncio.run(use()) == 0
        # Reachable only through its socket, in a directory no other account may enter: no TCP
        # listener (it was trust on 127.0.0.1: every local account a superuser).
        cluster = devdb.PrivateCluster(tmp_path / "pg")
        assert cluster.running()
        assert not devdb.port_open("127.0.0.1", cluster.port)
        assert "127.0.0.1" not in db.url and "host=/" in db.url
        assert stat.S_IMODE(os.stat(cluster.socket_dir).st_mode) == 0o700
        assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").is_socket()
        hba = (cluster.data / "pg_hba.conf").read_text()
        rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
        assert all(rule[-1] == "reject" for rule in rules if rule[0] == "host"), rules
        # Found again, it is reused, not initialised twice.
        again = devdb.find_database(tmp_path, environ={}, probe=("127.0.0.1", devdb.free_port()))
        assert again.url == db.url
    finally:
        cluster = devdb.PrivateCluster(tmp_path / "pg")
        cluster.stop()
    assert not devdb.port_open("127.0.0.1", cluster.port)
    shutil.rmtree(cluster.root)


def test_environment_wins(tmp_path: Path) -> None:
    db = devdb.find_database(tmp_path, environ={"DATABASE_URL": "postgresql://h/x"})
    assert (db.how, db.url) == ("environment", "postgresql://h/x")
