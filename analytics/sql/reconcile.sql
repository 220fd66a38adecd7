-- The event store (PostgreSQL) queries of analytics/reconcile.py, by name.

-- name: unsettled
-- Sends in [$1, $2) with no terminal status ($3) yet, oldest first, at most $4.
SELECT s.message_sid FROM events AS s
WHERE s.type = 'message.sent' AND s.occurred_at >= $1 AND s.occurred_at < $2
  AND NOT EXISTS (SELECT 1 FROM events AS t
                  WHERE t.message_sid = s.message_sid AND t.type = 'message.status'
                    AND t.status = ANY($3::text[]))
ORDER BY s.occurred_at
LIMIT $4;

-- name: known_messages
-- Which of the message SIDs $1 the store has events of.
SELECT DISTINCT message_sid FROM events WHERE message_sid = ANY($1::text[]);
