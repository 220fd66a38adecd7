-- Gap-free catch-up read. A reader that checkpoints by position alone can skip an event whose
-- transaction commits after a later one. So read in (tx_id, position) order and only below the
-- oldest transaction still in flight (here, read_horizon()), computed in this same statement: every transaction below
-- that horizon has committed or aborted, so nothing can later appear behind the cursor.
SELECT position, tx_id::text AS tx_id, idempotency_key, type, version, source, message_sid,
       phone, status, error_code, occurred_at, received_at, payload::text AS payload
FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < read_horizon()   -- pg_snapshot_xmin, ignoring other databases (migration 0018)
-- Order by the table's columns, not the output aliases, or the index cannot serve it.
ORDER BY events.tx_id, events.position
LIMIT $3
