"""The rollup: never misses, never repeats, and its model is a pure function of the log."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import asyncpg
import duckdb
import pytest

from analytics import number_map
from analytics.hygiene import load_rules
from analytics.lake import write_pointer, writer_lake
from analytics.model import open_model, read_cursor
from analytics.reader import prepare
from analytics.rollup import Rollup
from analytics.snapshot import open_snapshot
from schema import store
from tests.factory import T0, append, inbound, lake_at, message, rollup, sent, status, table

ROOT = Path(__file__).resolve().parent.parent
PHONES = [f"+1415555{n:04d}" for n in range(40)]


def random_log(seed: int, messages: int) -> list:  # type: ignore[type-arg]
    """Messages with realistic outcomes, callbacks shuffled and duplicated."""
    rng = random.Random(seed)
    evs = []
    for n in range(messages):
        outcome, code = rng.choice([("delivered", None)] * 6 + [
            ("undelivered", 30003), ("undelivered", 30005), ("failed", 30006),
            ("undelivered", 30007)])
        when = T0 + timedelta(minutes=n)
        evs.extend(message(n, rng.choice(PHONES), when, outcome, code, rng.uniform(1, 20)))
    rng.shuffle(evs)
    return evs + rng.sample(evs, len(evs) // 10)


async def test_out_of_order_and_duplicate_callbacks(db_url: str, db: asyncpg.Connection,
                                                    tmp_path: Path) -> None:
    sid, to = "SM" + "1" * 32, PHONES[0]
    delivered = status(sid, to, "delivered", T0 + timedelta(seconds=5))
    await append(db, [delivered, status(sid, to, "sent", T0 + timedelta(seconds=6))])
    await append(db, [sent(sid, to, T0)])
    await append(db, [status(sid, to, "queued", T0 + timedelta(seconds=7)), delivered])
    duck, _ = await rollup(db_url, tmp_path / "m.duckdb", batch_size=1)
    row = duck.execute("SELECT status, error_code, latency_s, first_sent_at, sent_at "
                       "FROM message_facts").fetchall()
    assert row == [("delivered", None, 5.0, T0 + timedelta(seconds=6), T0)]
    # A late failure callback after delivery does not move the status backwards.
    await append(db, [status(sid, to, "undelivered", T0 + timedelta(seconds=30), 30003)])
    duck.close()
    duck, _ = await rollup(db_url, tmp_path / "m.duckdb")
    assert duck.execute("SELECT status, latency_s FROM message_facts").fetchall() == [
        ("delivered", 5.0)]


async def test_batching_does_not_change_the_model(db_url: str, db: asyncpg.Connection,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Each batch is a lake commit (a few catalog round trips): ~20 of them, not 100+.
    await append(db, random_log(1, 150))
    # The small batches' rollup merges its map of numbers every 5 new ones.
    monkeypatch.setattr(number_map, "MERGE_AT", 5)
    merges = []
    merge = number_map.NumberMap._merge

    def counted(self: number_map.NumberMap) -> None:
        merges.append(len(self._recent))
        merge(self)

    monkeypatch.setattr(number_map.NumberMap, "_merge", counted)
    one, r1 = await rollup(db_url, tmp_path / "a.duckdb", batch_size=23)
    assert len(merges) > 3, merges
    monkeypatch.setattr(number_map, "MERGE_AT", 50_000)
    many, r2 = await rollup(db_url, tmp_path / "b.duckdb", batch_size=100_000)
    assert r1.events == r2.events == await db.fetchval("SELECT count(*) FROM events")
    assert r1.batches > r2.batches == 1
    for name, order in [("messages", "message_sid"), ("numbers", "phone"),
                        ("events", "position")]:
        assert table(one, name, order) == table(many, name, order), name


async def test_numbers_by_difference_equal_one_batch_in_every_path(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    """Each rollup run adds the messages it changed to their numbers' running figures
    (number_state). The paths that cannot add: a message that counted and then moves (failed
    then delivered; a late send event moving a delivered message's time) and a delivery older
    than a failure already counted send the number through a recount of all its messages. A
    run after each step, one event a batch, must give what one run over the whole log gives."""
    p1, p2, p3, p4, p5 = PHONES[:5]
    minute = timedelta(minutes=1)
    steps = [
        # p1: a failure counted, then an older delivery: failures since it are recounted.
        [sent("SM" + "a1" * 16, p1, T0 + 60 * minute),
         status("SM" + "a1" * 16, p1, "undelivered", T0 + 61 * minute, 30003)],
        [sent("SM" + "a2" * 16, p1, T0), status("SM" + "a2" * 16, p1, "delivered", T0 + minute)],
        # p2: failed, then delivered (delivery outranks the failure): the message moves.
        [sent("SM" + "b1" * 16, p2, T0),
         status("SM" + "b1" * 16, p2, "failed", T0 + minute, 30006)],
        [status("SM" + "b1" * 16, p2, "delivered", T0 + 2 * minute)],
        # p3: delivered before its send event is stored, which moves its time back.
        [status("SM" + "c1" * 16, p3, "delivered", T0 + 10 * minute)],
        [sent("SM" + "c1" * 16, p3, T0 + 5 * minute)],
        # p4: a read receipt after the delivery changes no figure.
        message(41, p4, T0, "delivered"), [status(f"SM{41:032x}", p4, "read", T0 + minute)],
        # p5: failures, then a newer delivery: the since figures start again by difference.
        message(51, p5, T0, "undelivered", 30003) + message(52, p5, T0 + minute, "failed", 30005),
        message(53, p5, T0 + 2 * minute, "delivered"),
        message(54, p5, T0 + 3 * minute, "undelivered", 30003),
    ]
    recomputed = 0
    for step in steps:
        await append(db, step)
        small, result = await rollup(db_url, tmp_path / "a.duckdb", batch_size=1)
        recomputed += result.recomputed
        small.close()
    small, _ = await rollup(db_url, tmp_path / "a.duckdb", batch_size=1)
    whole, one = await rollup(db_url, tmp_path / "b.duckdb", batch_size=100_000)
    assert recomputed == 3 and one.recomputed == 0, recomputed
    for name, order in [("numbers", "phone"), ("number_state", "phone"),
                        ("messages", "message_sid")]:
        assert table(small, name, order) == table(whole, name, order), name
    got = {r[0]: r[1:] for r in small.execute(
        "SELECT phone, sends, deliveries, failures, consecutive_failures, error_codes "
        "FROM numbers").fetchall()}
    assert got == {p1: (2, 1, 1, 1, "30003x1"), p2: (1, 1, 0, 0, None),
                   p3: (1, 1, 0, 0, None), p4: (1, 1, 0, 0, None),
                   p5: (4, 1, 3, 1, "30003x2, 30005x1")}


async def test_a_model_without_running_figures_gets_them_once(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    """A model written before number_state existed (numbers with rows, no running figures)
    gets them from all its messages at the first run, then goes on by difference."""
    evs = random_log(3, 60)
    await append(db, evs[:100])
    old, _ = await rollup(db_url, tmp_path / "a.duckdb", batch_size=50)
    old.execute("DELETE FROM number_state")     # as an earlier version left it
    old.close()
    await append(db, evs[100:])
    upgraded, _ = await rollup(db_url, tmp_path / "a.duckdb", batch_size=50)
    fresh, _ = await rollup(db_url, tmp_path / "b.duckdb", batch_size=100_000)
    assert upgraded.execute("SELECT count(*) FROM number_state").fetchone() == (
        len({e.phone for e in evs if e.phone}),)
    for name, order in [("numbers", "phone"), ("number_state", "phone")]:
        assert table(upgraded, name, order) == table(fresh, name, order), name


async def test_a_model_without_the_new_message_columns_gets_them_once(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    """A model written before messages carried their number's country, carrier and line type
    and their time gets the columns, filled from what is known, when the writer opens it."""
    evs = random_log(5, 40)
    await append(db, evs)
    old, _ = await rollup(db_url, tmp_path / "a.duckdb")
    # as an earlier version left it
    for column in ("country", "carrier", "line_type", "sent_or_seen_at"):
        old.execute(f"ALTER TABLE messages DROP COLUMN {column}")
    old.execute("UPDATE model_version SET ddl_sha256 = 'an earlier model'")
    old.close()
    upgraded, _ = await rollup(db_url, tmp_path / "a.duckdb")
    fresh, _ = await rollup(db_url, tmp_path / "b.duckdb")
    assert table(upgraded, "messages", "message_sid") == table(fresh, "messages", "message_sid")
    assert upgraded.execute("SELECT count(*) FROM messages WHERE country IS NOT NULL"
                            ).fetchone() != (0,)


async def test_changed_hygiene_rules_count_every_number_again(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    """The running figures depend on the rules (which codes are permanent, ...): under new
    rules every number is counted and judged again, not only the ones the next batch touches."""
    shipped = load_rules()
    narrow = dataclasses.replace(shipped, permanent_codes=(30006,))
    await append(db, random_log(4, 60))
    before, _ = await rollup(db_url, tmp_path / "a.duckdb", rules=narrow)
    before.close()
    await append(db, message(900, PHONES[0], T0 + timedelta(days=3)))
    after, _ = await rollup(db_url, tmp_path / "a.duckdb", rules=shipped)
    fresh, _ = await rollup(db_url, tmp_path / "b.duckdb", rules=shipped)
    for name, order in [("numbers", "phone"), ("number_state", "phone")]:
        assert table(after, name, order) == table(fresh, name, order), name
    assert after.execute("SELECT count(*) FROM numbers WHERE verdict = 'remove'").fetchone() \
        != (0,)    # 30005 (permanent under the shipped rules) is in the log


async def test_a_recount_in_slices_equals_one_in_one_piece(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    """A recount of every number (changed hygiene rules) goes in slices of the numbers so that
    it fits in memory at any history size; sliced, its figures and verdicts are the same as
    counted in one piece, and nothing pending before it is lost."""
    shipped = load_rules()
    narrow = dataclasses.replace(shipped, permanent_codes=(30006,))
    await append(db, random_log(5, 120))
    # a STOP from a number sent to, and one from a number never sent to (no running figures)
    await append(db, inbound(9000, PHONES[3], "STOP", T0 + timedelta(hours=5))
                 + inbound(9001, "+14155550999", "STOP", T0))
    models = {}
    for name, recount_slice in [("sliced", 7), ("whole", 10_000_000)]:
        path = tmp_path / f"{name}.duckdb"
        before, _ = await rollup(db_url, path, rules=narrow)
        before.close()
        pg = await asyncpg.connect(db_url)
        try:
            duck = open_model(lake_at(db_url, path))
            roll = Rollup(duck, shipped, recount_slice=recount_slice)
            await roll.run(pg)
            models[name] = duck
        finally:
            await pg.close()
    fresh, _ = await rollup(db_url, tmp_path / "fresh.duckdb", rules=shipped)
    for name, order in [("numbers", "phone"), ("number_state", "phone")]:
        assert table(models["sliced"], name, order) == table(fresh, name, order), name
        assert table(models["whole"], name, order) == table(fresh, name, order), name
    assert models["sliced"].execute(
        "SELECT phone FROM numbers WHERE verdict = 'opted_out' ORDER BY phone").fetchall() == [
        (PHONES[3],), ("+14155550999",)]


async def test_reader_waits_for_a_late_transaction(db_url: str, db: asyncpg.Connection,
                                                   tmp_path: Path) -> None:
    slow = await asyncpg.connect(db_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await store.append(slow, [sent("SM" + "a" * 32, PHONES[1], T0)])
        await append(db, [sent("SM" + "b" * 32, PHONES[2], T0)])
        duck, result = await rollup(db_url, tmp_path / "g.duckdb", complete=False)
        assert result.events == 0   # the later commit waits behind the open transaction
        duck.close()
        await tx.commit()
        duck, result = await rollup(db_url, tmp_path / "g.duckdb")
        assert result.events == 2
        assert duck.execute("SELECT count(*), count(DISTINCT position) FROM events"
                            ).fetchone() == (2, 2)
        duck.close()
        duck, result = await rollup(db_url, tmp_path / "g.duckdb")
        assert result.events == 0   # nothing repeated
    finally:
        await slow.close()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smsledger.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


async def cli_catch_up(env: dict[str, str], data_dir: Path, batch_size: int,
                       total: int) -> duckdb.DuckDBPyConnection:
    """`smsledger rollup --once` until the published model holds ``total`` events (the
    gap-free horizon is cluster-wide: a round may be held back a while); returns that
    snapshot, open."""
    deadline = time.monotonic() + 60
    while True:
        step = await asyncio.to_thread(cli, "rollup", "--once", "--batch-size",
                                       str(batch_size), env=env)
        assert step.returncode == 0, step.stderr
        con = open_snapshot(data_dir)
        if con.execute("SELECT events FROM rollup_cursor").fetchone() == (total,):
            return con
        con.close()
        assert time.monotonic() < deadline, "the rollup did not catch up within 60 s"


async def test_rollup_killed_mid_batch_then_rerun_equals_a_rebuild(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    await append(db, random_log(2, 400))
    env = dict(os.environ, DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(tmp_path / "crash"))
    killed = await asyncio.to_thread(cli, "rollup", "--once", "--batch-size", "100",
                                     "--crash-after-batches", "4", env=env)
    assert killed.returncode == -9, killed.stderr
    partial = open_snapshot(tmp_path / "crash")
    applied = partial.execute("SELECT events FROM rollup_cursor").fetchone()
    assert applied == (300,)    # three batches committed, the fourth rolled back whole
    assert partial.execute("SELECT count(*) FROM events").fetchone() == (300,)
    partial.close()
    rerun = await asyncio.to_thread(cli, "rollup", "--once", "--batch-size", "100", env=env)
    assert rerun.returncode == 0, rerun.stderr
    resumed = open_snapshot(tmp_path / "crash")
    scratch, _ = await rollup(db_url, tmp_path / "scratch.duckdb", batch_size=5000)
    for name, order in [("messages", "message_sid"), ("numbers", "phone"),
                        ("events", "position"), ("number_info", "phone")]:
        assert table(resumed, name, order) == table(scratch, name, order), name


async def test_two_workers_apply_each_event_once(db_url: str, db: asyncpg.Connection,
                                                 tmp_path: Path) -> None:
    await append(db, random_log(3, 300))
    env = dict(os.environ, DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(tmp_path / "w"))
    first, second = await asyncio.gather(
        asyncio.to_thread(cli, "rollup", "--once", "--batch-size", "50", env=env),
        asyncio.to_thread(cli, "rollup", "--once", "--batch-size", "50", env=env))
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    applied = sorted(int(r.stdout.split("applied ")[1].split()[0]) for r in (first, second))
    total = await db.fetchval("SELECT count(*) FROM events")
    assert applied == [0, total]
    duck = open_snapshot(tmp_path / "w")
    assert duck.execute("SELECT count(*), count(DISTINCT position) FROM events").fetchone() \
        == (total, total)


async def catch_up(rollup_: Rollup, pg: asyncpg.Connection, db: asyncpg.Connection) -> None:
    """Roll up until every committed event is applied. The gap-free horizon is cluster-wide:
    another session's open transaction on a shared server can hold a round back."""
    total = await db.fetchval("SELECT count(*) FROM events")
    deadline = time.monotonic() + 60
    while read_cursor(rollup_.duck)[1] < total:
        assert time.monotonic() < deadline, "the rollup did not catch up within 60 s"
        await rollup_.run(pg)
        await asyncio.sleep(0.05)


async def test_a_reader_sees_one_state_across_three_publishes(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    await append(db, random_log(4, 50))
    pg = await asyncpg.connect(db_url)
    await prepare(pg)
    lake = writer_lake(tmp_path, db_url)
    duck = open_model(lake)
    write_pointer(tmp_path, lake)
    rollup_ = Rollup(duck, load_rules(), batch_size=20)
    await catch_up(rollup_, pg, db)
    reader = open_snapshot(tmp_path)
    reader.execute("BEGIN")
    state = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM messages), " \
            "(SELECT sum(sends) FROM numbers), events FROM rollup_cursor"
    before = reader.execute(state).fetchone()
    assert before is not None and before[0] == before[3] > 0
    for round_ in (1, 2, 3):   # three publishes while the reader's transaction stays open
        await append(db, [e for n in range(20) for e in message(
            1000 * round_ + n, PHONES[n], T0 + timedelta(hours=round_))])
        await catch_up(rollup_, pg, db)
        assert reader.execute(state).fetchone() == before
    reader.execute("COMMIT")
    after = reader.execute(state).fetchone()
    reader.close()
    total = await db.fetchval("SELECT count(*) FROM events")
    assert after is not None and after[0] == after[3] == total > before[0]
    # The writer never waited: its connection saw each of its own commits at once.
    assert duck.execute("SELECT count(*) FROM events").fetchone() == (total,)
    await pg.close()


async def test_every_model_key_is_unique(db_url: str, db: asyncpg.Connection,
                                         tmp_path: Path) -> None:
    await append(db, random_log(6, 300))
    duck, _ = await rollup(db_url, tmp_path / "u.duckdb", batch_size=37)
    for name, key in [("messages", "message_sid"), ("numbers", "phone"),
                      ("number_info", "phone"), ("events", "position")]:
        total, distinct = duck.execute(
            f"SELECT count(*), count(DISTINCT {key}) FROM {name}").fetchone()  # noqa: S608
        assert total == distinct > 0, name


async def test_killed_during_compaction_loses_nothing_and_the_next_run_finishes(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    await append(db, random_log(7, 200))
    env = dict(os.environ, DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(tmp_path / "c"))
    total = await db.fetchval("SELECT count(*) FROM events")
    (await cli_catch_up(env, tmp_path / "c", 60, total)).close()

    def files() -> int:
        con = open_snapshot(tmp_path / "c")
        try:
            row = con.execute("SELECT count(*) FROM ducklake_list_files('model', 'events')"
                              ).fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()

    before = files()
    assert before > 1
    killed = await asyncio.to_thread(cli, "rollup", "--once", "--crash-in-compaction", env=env)
    assert killed.returncode == -9, killed.stderr
    rerun = await asyncio.to_thread(cli, "rollup", "--once", "--compact", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert files() == 1
    resumed = open_snapshot(tmp_path / "c")
    scratch, _ = await rollup(db_url, tmp_path / "scratch2", batch_size=5000)
    for name, order in [("messages", "message_sid"), ("numbers", "phone"),
                        ("events", "position"), ("number_info", "phone")]:
        assert table(resumed, name, order) == table(scratch, name, order), name
    resumed.close()
    scratch.close()


async def test_rebuild_equals_incremental_and_switches_readers_when_complete(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    from analytics.lake import read_pointer
    await append(db, random_log(8, 150))
    env = dict(os.environ, DATABASE_URL=db_url, SMSLEDGER_DATA_DIR=str(tmp_path / "r"))
    total = await db.fetchval("SELECT count(*) FROM events")
    con = await cli_catch_up(env, tmp_path / "r", 37, total)   # incremental, small batches
    before = read_pointer(tmp_path / "r")
    rebuilt = await asyncio.to_thread(cli, "rollup", "--rebuild", "--batch-size", "100", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuild: done" in rebuilt.stderr and "events/s" in rebuilt.stderr
    after = read_pointer(tmp_path / "r")
    assert after.schema != before.schema
    fresh = open_snapshot(tmp_path / "r")
    assert fresh.execute("SELECT events FROM rollup_cursor").fetchone() == (total,)
    for name, order in [("messages", "message_sid"), ("numbers", "phone"),
                        ("events", "position"), ("number_info", "phone"),
                        ("contact_events", "position")]:
        assert table(fresh, name, order) == table(con, name, order), name
    con.close()   # the reader of the old model kept working until now
    fresh.close()
