-- SMSLEDGER_OPT_OUT_SCOPE=sender: the latest consent fact of each scope that covers a send,
-- and the latest suppression fact. A STOP that reached a Messaging Service scopes to that
-- service, one that reached a plain number to that sender number (as Twilio applies it); a
-- fact whose scope is unknown (no service, no receiving number) and suppressions stay
-- account-wide. $2: the send's Messaging Service SID, $3: its sender ('' when none; NULL
-- refuses on every scope, as a check for a send whose sender is Twilio's own, e.g. Verify).
-- The type list is the index's predicate: served by events_contact_phone, like contact_state.
SELECT DISTINCT ON (kind, scope) kind, scope, type, received_at, payload::text AS payload
FROM (
    SELECT CASE WHEN type IN ('contact.opted_out', 'contact.opted_in') THEN 'consent'
                ELSE 'suppression' END AS kind,
           CASE WHEN type IN ('contact.suppressed', 'contact.unsuppressed') THEN 'account'
                WHEN coalesce(payload->>'messaging_service_sid', '') <> ''
                    THEN 'messaging_service:' || (payload->>'messaging_service_sid')
                WHEN coalesce(payload->>'to', '') <> '' THEN 'sender:' || (payload->>'to')
                ELSE 'account' END AS scope,
           type, received_at, occurred_at, payload, position
    FROM events
    WHERE phone = $1
      AND type IN ('contact.opted_out', 'contact.opted_in',
                   'contact.suppressed', 'contact.unsuppressed')
) AS facts
WHERE scope = 'account' OR scope = 'messaging_service:' || $2 OR scope = 'sender:' || $3
   OR $2::text IS NULL OR $3::text IS NULL
-- The newest fact by its own time (log order breaks ties), as in contact_state.sql.
ORDER BY kind, scope, occurred_at DESC, position DESC
