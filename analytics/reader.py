"""The catch-up reader: committed events after a cursor, gap-free, as Arrow, in bounded batches.

Why (tx_id, position) and the horizon: see ``schema/sql/rollup_batch.sql``. The batch travels as
``COPY (SELECT ...) TO STDOUT`` CSV, parsed by Arrow's multithreaded CSV reader straight into
columns: no Python object per value, so memory stays flat per batch and the rate stays close to
a raw COPY-out (bench/rollup measures both in the same run).
"""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from schema.store import Cursor, sql

COLUMNS: dict[str, pa.DataType] = {
    "position": pa.int64(), "tx_id": pa.uint64(), "type": pa.string(), "source": pa.string(),
    "message_sid": pa.string(), "phone": pa.string(), "status": pa.string(),
    "error_code": pa.int32(), "occurred_at": pa.timestamp("us", tz="UTC"),
    "received_at": pa.timestamp("us", tz="UTC"), "category": pa.string(),
    "from_number": pa.string(), "service_sid": pa.string(), "segments": pa.int32(),
    "detail": pa.string(), "line_type": pa.string(),
}


LOOKUP_MAX_SIDS = 100_000   # a batch's messages (250 k events: ~50 k); see fetch_batch
NEVER = datetime(9999, 1, 1, tzinfo=UTC)   # later than any event: no file is read


@dataclasses.dataclass(frozen=True)
class Batch:
    table: pa.Table
    after: Cursor      # the cursor once this batch is applied
    # The earliest time of any stored event of the batch's messages: no message the batch
    # touches was first seen before it, so the model looks for their rows only in the files
    # written since (DuckLake skips the others by their min/max). None: unknown, look at all.
    first_seen_from: datetime | None = None
    # The same for the messages to the numbers the batch's Lookup answers are about (their
    # rows take the answer's carrier): NEVER when they have none. None: unknown, look at all.
    looked_up_from: datetime | None = None

    def __len__(self) -> int:
        return int(self.table.num_rows)


async def prepare(conn: asyncpg.Connection) -> None:
    """Session settings the CSV parsing relies on; no JIT (the batch query is an index range
    scan, and compiling it cost more than running it)."""
    await conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET jit = off")


async def fetch_batch(conn: asyncpg.Connection, cursor: Cursor, limit: int) -> Batch:
    buffer = io.BytesIO()
    # asyncpg binds the arguments into the COPY query as quoted literals (COPY takes none).
    await conn.copy_from_query(sql("rollup_batch"), str(cursor.tx_id), cursor.position, limit,
                               output=buffer, format="csv")
    data = buffer.getvalue()
    if not data:
        return Batch(pa.table({name: pa.array([], type=t) for name, t in COLUMNS.items()}),
                     cursor)
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS)),
        convert_options=pacsv.ConvertOptions(column_types=COLUMNS, strings_can_be_null=True,
                                             quoted_strings_can_be_null=False))
    last = table.num_rows - 1
    after = Cursor(int(table["tx_id"][last].as_py()), int(table["position"][last].as_py()))
    sids = pc.unique(table["message_sid"].drop_null())
    first = None
    if 0 < len(sids) <= LOOKUP_MAX_SIDS:
        # An index lookup per message of the batch (events_message_sid): the cost follows the
        # batch, and it runs while the batch before is applied. Written as one lookup per SID:
        # given `message_sid = ANY(...)` with tens of thousands of SIDs, the planner chose a
        # scan of the whole log (1.9 s for 10 k SIDs on 25 M events, against 0.13 s). A
        # larger batch looks at all the model's messages instead.
        first = await conn.fetchval(
            "SELECT min(e.first) FROM unnest($1::text[]) AS s(sid) CROSS JOIN LATERAL "
            "(SELECT min(occurred_at) AS first FROM events WHERE message_sid = s.sid) AS e",
            sids.to_pylist())
    looked_up = pc.unique(table.filter(pc.equal(table["type"], "number.looked_up"))["phone"]
                          .drop_null())
    looked_up_from = None
    if 0 < len(looked_up) <= LOOKUP_MAX_SIDS:
        # The numbers' messages by the phone index (events_phone_type), then their earliest
        # event by the SID index: the cost follows those numbers' messages, not the history.
        looked_up_from = await conn.fetchval(
            "SELECT min(occurred_at) FROM events WHERE message_sid IN ("
            "  SELECT message_sid FROM events WHERE phone = ANY($1::text[])"
            "  AND type IN ('message.sent', 'message.status') AND message_sid IS NOT NULL)",
            looked_up.to_pylist()) or NEVER
    return Batch(table, after, first, looked_up_from)
