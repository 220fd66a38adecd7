"""The README's commands start a private PostgreSQL when none is reachable."""

from __future__ import annotations

import asyncio
import shutil
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
