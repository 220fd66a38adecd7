-- Every alert event (opened, resolved, notified) since $1, oldest first: the alert engine and
-- the notifier derive open alerts and pending notifications from them. Served by the partial
-- index events_alerts (migration 0016); the LIKE matches its predicate.
SELECT position, type, idempotency_key, received_at, payload::text AS payload
FROM events
WHERE type LIKE 'alert.%' AND received_at >= $1::timestamptz
ORDER BY position
