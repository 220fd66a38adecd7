-- The latest consent fact and the latest suppression fact for one phone number: the send path
-- refuses while the latest of either says "out". Served by events_contact_phone.
SELECT DISTINCT ON (kind) kind, type, received_at, occurred_at, payload::text AS payload
FROM (
    SELECT CASE WHEN type IN ('contact.opted_out', 'contact.opted_in') THEN 'consent'
                ELSE 'suppression' END AS kind,
           type, received_at, occurred_at, payload, position
    FROM events
    WHERE phone = $1
      AND type IN ('contact.opted_out', 'contact.opted_in',
                   'contact.suppressed', 'contact.unsuppressed')
) AS facts
-- The newest fact by its own time, log order breaking ties: a START delivered late (Event
-- Streams retry for hours) that is older than a STOP already stored does not undo it.
ORDER BY kind, occurred_at DESC, position DESC
