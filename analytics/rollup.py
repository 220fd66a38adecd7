"""The rollup: apply the event log to the DuckDB model, batch by batch, exactly once.

Each batch is applied in one DuckDB transaction together with the cursor that says how far the
log has been applied: its events, the messages it touched (found by their SIDs) and the numbers
it touched, whose running figures (``number_state``) take the batch's messages by difference
and whose rows in ``numbers`` (stats and hygiene verdicts) are made again from those figures.
Nothing is recomputed from a whole table: a batch costs what it brings. A crash (kill -9
included) mid-batch rolls the whole batch back, cursor and all, so the rerun repeats nothing
and loses nothing. While one batch is applied (in a thread: DuckDB releases the GIL), the next
is already being read from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache, partial
from importlib import resources

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics import phones as phones_module
from analytics.hygiene import HygieneRules
from analytics.model import read_cursor, without_comments, write_cursor
from analytics.number_map import UNKNOWN, Dims, NumberMap
from analytics.reader import Batch, fetch_batch

log = logging.getLogger("smsledger.analytics.rollup")

EVER = datetime(1, 1, 1, tzinfo=UTC)    # a batch that does not bound its messages' age


@cache
def statements(name: str) -> list[str]:
    """The statements of ``analytics/sql/<name>.sql`` (split on ';' at line ends)."""
    text = resources.files("analytics").joinpath("sql", f"{name}.sql").read_text("utf-8")
    return [s for s in text.split(";\n") if s.strip() and not all(
        line.strip().startswith("--") or not line.strip() for line in s.splitlines())]


@dataclasses.dataclass
class RollupResult:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    recomputed: int = 0     # numbers counted again from all their messages (rare)


# Messages per slice when every number is counted again (a changed hygiene rule): at 5 M
# messages in one piece the count ran out of DuckDB's memory limit.
RECOUNT_SLICE = 250_000


class Rollup:
    def __init__(self, duck: duckdb.DuckDBPyConnection, rules: HygieneRules, *,
                 batch_size: int = 100_000, crash_after_batches: int = 0,
                 on_batch: Callable[[int], None] | None = None,
                 recount_slice: int = RECOUNT_SLICE) -> None:
        self.duck = duck
        self.recount_slice = recount_slice   # messages per slice of a recount of every number
        self.on_batch = on_batch   # progress: called with each applied batch's event count
        self.rules = rules
        self.batch_size = batch_size
        # Fault injection for the crash tests: SIGKILL ourselves inside the Nth batch's
        # transaction, after its rows are written and before the commit.
        self._crash_after = crash_after_batches
        self._applied = 0
        # Numbers already described, with what their messages and rows carry of them
        # (country, carrier, its source, line type: number_dims()), so that a batch's new
        # numbers, its messages' columns and its numbers' rows are found without scanning
        # number_info; loaded lazily, changed only after a batch commits. A compact map:
        # 12 bytes an E.164 number instead of a dict's ~110.
        self._known: NumberMap | None = None
        # The batch being applied: what it describes anew (new numbers, Lookup answers) until
        # its commit moves that into _known.
        self._described: Mapping[str, Dims] = {}
        self._state_checked = False
        # Whether pending_changes / dirty_numbers may hold rows (None: not known yet, looked
        # up once per process by ensure_number_state).
        self._pending: bool | None = None
        self.recomputed = 0     # numbers counted again from all their messages, ever

    def apply(self, batch: Batch, events_total: int, *, last: bool = False) -> None:
        """One batch in one transaction with the cursor. ``last``: the run ends with it; when
        it is also the run's only batch (a tick), its numbers are updated in the same commit,
        else its changes wait in pending_changes for ``flush_numbers``."""
        con = self.duck
        con.execute("BEGIN")
        try:
            con.register("batch", batch.table)
            first_seen = {"first_seen_from": batch.first_seen_from or EVER}
            self._run("apply_events")
            if self._has_prefix(batch, "contact."):
                self._run("apply_contacts")
            # Before the messages: they carry their number's country and carrier.
            phones = pc.unique(batch.table["phone"].drop_null()).to_pylist()
            described = self._describe_new_numbers(phones)
            self._described = described
            con.register("batch_dims", self._dims_table(phones))
            self._run("apply_messages", first_seen)
            if self._count("SELECT 1 FROM merged"):
                self._run("replace_messages", first_seen)
            if self._has(batch, "message.priced"):
                self._run("apply_prices", first_seen)
            if self._has(batch, "number.looked_up"):
                self._run("apply_lookups", {"looked_up_from": batch.looked_up_from or EVER})
                # The batch's Lookup answers (the map shares equal tuples when it takes them).
                described.update((phone, tuple(dims)) for phone, *dims in con.execute(
                    "SELECT phone, country, carrier, carrier_source, line_type FROM "
                    "number_dims() WHERE phone IN "
                    "(SELECT phone FROM batch WHERE type = 'number.looked_up')").fetchall())
            if last and not self._pending:
                self._update_numbers("SELECT phone FROM batch WHERE phone IS NOT NULL "
                                     "UNION SELECT phone FROM changes")
            else:
                self._run("pending_changes", {"seq": events_total})
                self._pending = True
            write_cursor(con, batch.after, events_total)
            self._applied += 1
            if self._crash_after and self._applied >= self._crash_after:
                os.kill(os.getpid(), signal.SIGKILL)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            self._described = {}
            con.unregister("batch")
            con.unregister("batch_dims")
        assert self._known is not None
        try:
            self._known.update(described)
        except BaseException:
            self._known = None      # what the commit stored is loaded again at the next batch
            raise

    def _known_numbers(self) -> NumberMap:
        if self._known is None:
            self._known = NumberMap.load(self.duck.execute(
                "SELECT phone, country, carrier, carrier_source, line_type FROM number_dims()"))
        return self._known

    def _dims_table(self, phones: list[str]) -> pa.Table:
        """What is known of each of ``phones`` (the batch's numbers for its messages,
        apply_messages.sql; the numbers to render, render_numbers.sql), from the map and what
        the batch being applied describes: reading number_info would cost a scan of every
        number."""
        found = self._known_numbers().get_many(phones)
        dims = [self._described.get(p) or k or UNKNOWN for p, k in zip(phones, found,
                                                                       strict=True)]
        return pa.table({"phone": pa.array(phones, pa.string()),
                         "country": pa.array([d[0] for d in dims], pa.string()),
                         "carrier": pa.array([d[1] for d in dims], pa.string()),
                         "carrier_source": pa.array([d[2] for d in dims], pa.string()),
                         "line_type": pa.array([d[3] for d in dims], pa.string())})

    @staticmethod
    def _has(batch: Batch, event_type: str) -> bool:
        """Whether the batch holds an event of this type (a lake statement costs a catalog
        round trip even with nothing to do)."""
        return bool(pc.any(pc.equal(batch.table["type"], event_type)).as_py())

    @staticmethod
    def _has_prefix(batch: Batch, prefix: str) -> bool:
        return bool(pc.any(pc.starts_with(batch.table["type"], prefix)).as_py())

    def _run(self, name: str, extra: Mapping[str, object] | None = None) -> None:
        """The statements of ``analytics/sql/<name>.sql``, with the hygiene rules (and the
        ``extra`` parameters) they name."""
        params = {**self.rules.sql_params(), **(extra or {})}
        for statement in statements(name):
            self.duck.execute(statement, {k: v for k, v in params.items()
                                          if re.search(rf"\${k}\b", statement)})

    def _count(self, query: str) -> int:
        # ``query`` is one of this module's own constant statements, never input.
        row = self.duck.execute(f"SELECT count(*) FROM ({query})").fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def flush_numbers(self) -> int:
        """The end of a run: the run's pending changes into the numbers' running figures and
        the touched numbers' rows in ``numbers``, in one transaction that also empties the
        pending tables. Returns how many numbers were rendered (0: nothing was pending, nothing
        written)."""
        if self._pending is False:
            return 0
        con = self.duck
        con.execute("BEGIN")
        try:
            self._run("take_changes")
            con.execute("CREATE OR REPLACE TEMP TABLE dirty AS "
                        "SELECT DISTINCT phone FROM dirty_numbers")
            changed, dirty = self._count("SELECT 1 FROM changes"), self._count(
                "SELECT 1 FROM dirty")
            if not changed and not dirty:   # a tick with nothing new writes nothing
                con.execute("ROLLBACK")
                self._pending = False
                return 0
            if changed >= 100_000:    # a backlog's end: say what the wait is for
                log.info("taking %d changed messages into their numbers", changed)
            count = self._update_numbers("SELECT phone FROM dirty UNION SELECT phone FROM changes")
            if changed:
                con.execute("DELETE FROM pending_changes")
            if dirty:
                con.execute("DELETE FROM dirty_numbers")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._pending = False
        return count

    def _update_numbers(self, affected: str) -> int:
        """The numbers' running figures from ``changes``, then the rows in ``numbers`` of the
        numbers ``affected`` selects (a consent fact or a lookup touches a number without a
        message). Returns how many numbers were rendered."""
        con = self.duck
        con.execute(f"CREATE OR REPLACE TEMP TABLE affected AS {affected}")
        self._run("apply_numbers")
        self._run("number_state")
        con.execute("CREATE OR REPLACE TEMP TABLE state_out AS "
                    "SELECT * FROM fresh_state ANTI JOIN slow USING (phone)")
        con.execute("INSERT INTO recompute SELECT phone FROM slow")
        self._recompute_state()
        self._store_state()
        return self._render()

    def _render(self) -> int:
        """The rows in ``numbers`` of the numbers in ``affected``, from ``state_out`` (the
        figures just stored) and ``state_rows`` (the figures as they were, of every number
        affected: apply_numbers.sql). Returns how many."""
        con = self.duck
        count = self._count("SELECT 1 FROM affected")
        if count:
            phones = [row[0] for row in con.execute("SELECT phone FROM affected").fetchall()]
            con.register("affected_dims", self._dims_table(phones))
            # The figures just computed, and as they were for numbers touched without a
            # message (a consent fact, a lookup, an inbound message).
            con.execute("CREATE OR REPLACE TEMP TABLE affected_state AS "
                        "SELECT * FROM state_out")
            con.execute("INSERT INTO affected_state BY NAME SELECT s.* EXCLUDE (rid) "
                        "FROM state_rows s SEMI JOIN affected USING (phone) "
                        "ANTI JOIN state_out USING (phone)")
            try:
                self._run("render_numbers")
            finally:
                con.unregister("affected_dims")
        return count

    def _recompute_state(self) -> None:
        """The numbers in ``recompute``, counted again from all their messages (rare: see
        apply_numbers.sql), added to ``state_out``."""
        count = self._count("SELECT 1 FROM recompute")
        if not count:
            return
        log.debug("counting %d numbers again from all their messages", count)
        self.recomputed += count
        self._run("recompute_numbers")
        self._run("number_state")
        self.duck.execute("INSERT INTO state_out BY NAME SELECT * FROM fresh_state")

    def _store_state(self, *, replace: bool = True) -> None:
        """``state_out`` into number_state; with ``replace``, their old rows out first, by the
        row ids apply_numbers.sql read them with (``state_rows``): a DELETE by phone would
        read every number's phone again."""
        if self._count("SELECT 1 FROM state_out"):
            if replace:
                self.duck.execute("DELETE FROM number_state WHERE rowid IN (SELECT rid FROM "
                                  "state_rows SEMI JOIN state_out USING (phone))")
            self.duck.execute("INSERT INTO number_state BY NAME SELECT * FROM state_out")

    def figures_digest(self) -> str:
        """What the running figures depend on besides the log: the hygiene rules (which codes
        count as permanent, unreachable, ...) and the SQL that keeps them."""
        # Comment lines do not count: a change of wording recounts nothing.
        text = json.dumps(self.rules.sql_params(), sort_keys=True) + "".join(
            without_comments(statement) for name in ("apply_numbers", "number_state",
                                                     "recompute_numbers", "render_numbers")
            for statement in statements(name))
        return hashlib.sha256(text.encode()).hexdigest()

    def ensure_number_state(self) -> None:
        """Once per process: numbers without running figures (a model written by an earlier
        version; a first run killed before its end), or figures kept under other hygiene rules
        or another definition, are counted again from all the messages and every number is
        rendered again, in one transaction that also takes whatever was pending: the one time
        the whole history is read."""
        if self._state_checked:
            return
        con = self.duck
        digest = self.figures_digest()
        row = con.execute("SELECT max(digest) FROM number_state_version").fetchone()
        stored = row[0] if row else None
        has_state = self._count("SELECT 1 FROM number_state LIMIT 1")
        if stored != digest or not has_state:
            con.execute("BEGIN")
            try:
                if self._count("SELECT 1 FROM messages LIMIT 1") or has_state:
                    log.info("counting every number's running figures again from the messages "
                             "(%s)", "the hygiene rules changed" if stored and has_state
                             else "first run of this version on this model")
                    self._recount_every_number(bool(has_state))
                    self._pending = False
                if stored != digest:
                    con.execute("DELETE FROM number_state_version")
                    con.execute("INSERT INTO number_state_version VALUES (?)", [digest])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        if self._pending is None:
            self._pending = bool(self._count("SELECT 1 FROM pending_changes LIMIT 1")
                                 or self._count("SELECT 1 FROM dirty_numbers LIMIT 1"))
        self._state_checked = True

    def _recount_every_number(self, has_state: bool) -> None:
        """Inside ensure_number_state's transaction: every number's running figures counted
        again from all its messages, and every number rendered again, in slices of the numbers
        by a hash of the phone (about ``recount_slice`` messages each), so that what is held at
        once stays within DuckDB's memory limit at any history size (at 5 M messages, one piece
        ran out of it). Takes whatever was pending: its messages are in what is counted."""
        con = self.duck
        messages = self._count("SELECT 1 FROM messages")
        slices = max(1, -(-messages // max(1, self.recount_slice)))
        if has_state:
            con.execute("DELETE FROM number_state")
        con.execute("CREATE OR REPLACE TEMP TABLE every_number AS "
                    "SELECT DISTINCT to_number AS phone FROM messages "
                    "WHERE to_number IS NOT NULL "
                    "UNION SELECT phone FROM numbers UNION SELECT phone FROM dirty_numbers "
                    "UNION SELECT phone FROM pending_changes")
        # Every old row is gone: the figures of the numbers without messages are none.
        con.execute("CREATE OR REPLACE TEMP TABLE state_rows AS "
                    "SELECT 0::BIGINT AS rid, * FROM number_state LIMIT 0")
        started = time.perf_counter()
        for k in range(slices):
            con.execute("CREATE OR REPLACE TEMP TABLE recompute AS SELECT phone "
                        "FROM every_number WHERE hash(phone) % $slices = $k",
                        {"slices": slices, "k": k})
            con.execute("CREATE OR REPLACE TEMP TABLE state_out AS "
                        "SELECT * FROM number_state LIMIT 0")
            self._recompute_state()
            self._store_state(replace=False)    # every row was deleted above
            con.execute("CREATE OR REPLACE TEMP TABLE affected AS SELECT phone FROM recompute")
            self._render()
            if slices > 1:
                log.info("counted slice %d of %d of the numbers (%.0f s)", k + 1, slices,
                         time.perf_counter() - started)
        con.execute("DROP TABLE every_number")
        con.execute("DELETE FROM pending_changes")
        con.execute("DELETE FROM dirty_numbers")

    def _describe_new_numbers(self, phones: list[str]) -> dict[str, Dims]:
        """The batch's numbers (``phones``) not described yet, into number_info; returns what
        their messages carry of them (no Lookup answer yet: the hints)."""
        new = self._known_numbers().missing(phones)
        if not new:
            return {}
        described = [phones_module.describe(p) for p in new]
        table = pa.table({"phone": new, "country": [d[0] for d in described],
                          "carrier_hint": [d[1] for d in described],
                          "type_hint": [d[2] for d in described]})
        self.duck.register("new_numbers", table)
        try:
            self.duck.execute("INSERT INTO number_info BY NAME SELECT * FROM new_numbers")
        finally:
            self.duck.unregister("new_numbers")
        return {p: (d[0], d[1], "hint" if d[1] is not None else None, d[2])
                for p, d in zip(new, described, strict=True)}

    async def run(self, pg: asyncpg.Connection, stop: asyncio.Event | None = None,
                  ) -> RollupResult:
        """Apply everything committed so far (or until ``stop`` is set, between batches)."""
        started = time.perf_counter()
        result = RollupResult()
        await asyncio.to_thread(self.ensure_number_state)
        recomputed = self.recomputed
        cursor, total = read_cursor(self.duck)
        pending = asyncio.create_task(fetch_batch(pg, cursor, self.batch_size))
        try:
            while True:
                batch = await pending
                if not len(batch):
                    break
                pending = asyncio.create_task(fetch_batch(pg, batch.after, self.batch_size))
                total += len(batch)
                last = len(batch) < self.batch_size
                await asyncio.to_thread(partial(self.apply, batch, total, last=last))
                result.events += len(batch)
                result.batches += 1
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                if stop is not None and stop.is_set():
                    break
                if len(batch) < self.batch_size:
                    # The end of what was committed when it was read: this round is done. (A
                    # round that chased events arriving meanwhile would never end, and the
                    # numbers, the alerts and the reports wait for its end.)
                    break
        finally:
            if not pending.done():
                pending.cancel()
                try:
                    await pending
                except (asyncio.CancelledError, asyncpg.PostgresError, OSError):
                    pass
        # Also after a crash: a previous run's pending changes are taken by this one.
        await asyncio.to_thread(self.flush_numbers)
        result.recomputed = self.recomputed - recomputed
        result.seconds = time.perf_counter() - started
        return result
