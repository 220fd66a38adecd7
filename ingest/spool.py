"""The local spool: where acknowledged events wait while PostgreSQL is unreachable.

Records are appended to ``current.log`` and fsync'd before any request in them is answered.
Framing: 4-byte big-endian length, 4-byte CRC32, then the JSON of one batch of events. A torn
tail (a crash mid-write) fails its length or checksum and is ignored on read: it was never
acknowledged, because the fsync that would have preceded the 2xx never completed.

The replayer seals ``current.log`` by renaming it to ``segment-<ns>.log`` (the writer starts a
new file), inserts each sealed segment into PostgreSQL idempotently (by idempotency key), and
deletes the segment only after that commit. A crash between commit and delete replays the
segment again, which inserts nothing new.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from schema.events import Event, EventType, Source
from schema.private_files import open_private, private_dir

log = logging.getLogger("smsledger.ingest.spool")

_HEADER = struct.Struct(">II")
MAX_RECORD = 64 << 20


class SpoolUnavailable(RuntimeError):
    """The spool could not make the events durable (disk full, unwritable)."""


def _encode(events: Sequence[Event]) -> bytes:
    body = json.dumps([{
        "type": str(e.type), "idempotency_key": e.idempotency_key, "source": str(e.source),
        "occurred_at": e.occurred_at.isoformat(), "received_at": e.received_at.isoformat(),
        "payload": e.payload, "message_sid": e.message_sid, "phone": e.phone,
        "status": e.status, "error_code": e.error_code, "version": e.version,
    } for e in events], separators=(",", ":"), ensure_ascii=False).encode()
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes) -> list[Event]:
    out = []
    for raw in json.loads(body):
        out.append(Event(
            type=EventType(raw["type"]), idempotency_key=raw["idempotency_key"],
            source=Source(raw["source"]), occurred_at=datetime.fromisoformat(raw["occurred_at"]),
            received_at=datetime.fromisoformat(raw["received_at"]), payload=raw["payload"],
            message_sid=raw["message_sid"], phone=raw["phone"], status=raw["status"],
            error_code=raw["error_code"], version=raw["version"]))
    return out


def read_segment(path: Path) -> tuple[list[Event], int]:
    """The events of every whole record in ``path``, and how many bytes were whole."""
    data = path.read_bytes()
    events: list[Event] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if length > MAX_RECORD or end > len(data) or zlib.crc32(data[start:end]) != crc:
            log.warning("spool %s: ignoring a torn or corrupt tail at byte %d of %d",
                        path.name, offset, len(data))
            break
        events.extend(_decode(data[start:end]))
        offset = end
    return events, offset


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._lock = asyncio.Lock()
        self.depth_events = 0     # events spooled and not yet replayed (this process's view)

    @property
    def current(self) -> Path:
        return self.directory / "current.log"

    def segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("segment-*.log"))

    def pending_bytes(self) -> int:
        paths = [*self.segments(), self.current]
        return sum(p.stat().st_size for p in paths if p.exists())

    def writable(self) -> bool:
        """Whether an append would find a directory to write in (not that the disk has room)."""
        target = self.directory if self.directory.exists() else self.directory.parent
        return target.is_dir() and os.access(target, os.W_OK)

    def _write(self, record: bytes) -> None:
        if self._fd is None:
            private_dir(self.directory)
            self._fd = open_private(self.current, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        written = os.write(self._fd, record)
        if written != len(record):
            raise OSError(f"short write to the spool ({written} of {len(record)} bytes)")
        os.fsync(self._fd)

    async def append(self, events: Sequence[Event]) -> None:
        """Make ``events`` durable on local disk, or raise ``SpoolUnavailable``."""
        record = _encode(events)
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, record)
            except OSError as exc:
                self._close()
                raise SpoolUnavailable(f"{type(exc).__name__}: {exc.strerror or exc}") from None
        self.depth_events += len(events)

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    async def seal(self) -> None:
        """Close the current file and rename it into a segment for the replayer."""
        async with self._lock:
            self._close()
            if self.current.exists() and self.current.stat().st_size:
                self.current.rename(self.directory / f"segment-{time.time_ns()}.log")

    def set_aside(self, event: Event) -> None:
        """Keep an event PostgreSQL refuses in ``rejected.log`` (same framing) for a person."""
        fd = open_private(self.directory / "rejected.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab") as f:
            f.write(_encode([event]))
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        self._close()


async def replay(spool: Spool, insert: Any) -> int:
    """Seal, then insert every sealed segment with ``insert(events)`` (one transaction each,
    idempotent) and delete it after the commit. Returns the events replayed."""
    await spool.seal()
    replayed = 0
    for segment in spool.segments():
        events, _ = await asyncio.to_thread(read_segment, segment)
        for start in range(0, len(events), 5000):
            await insert(events[start:start + 5000])
        segment.unlink()
        replayed += len(events)
        spool.depth_events = max(0, spool.depth_events - len(events))
        log.info("replayed %d spooled events from %s", len(events), segment.name)
    return replayed
