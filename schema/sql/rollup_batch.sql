-- One batch for the rollup, gap-free (see read_after.sql for why the horizon), with the few
-- payload fields the model needs extracted only for the event types that carry them: status
-- callbacks, the bulk of the log, pay for no jsonb extraction at all.
SELECT position, tx_id::text::numeric(20, 0) AS tx_id, type, source, message_sid, phone, status,
       error_code, occurred_at, received_at,
       CASE WHEN type IN ('message.sent', 'message.send_failed', 'message.refused')
            THEN payload->>'category' END AS category,
       CASE WHEN type = 'message.sent' THEN payload->>'from'
            WHEN type = 'message.inbound' THEN payload->>'To' END AS from_number,
       CASE WHEN type = 'message.sent' THEN payload->>'messaging_service_sid' END
           AS service_sid,
       CASE WHEN type = 'message.sent' THEN (payload->>'segments')::int END AS segments,
       CASE WHEN type IN ('contact.opted_out', 'contact.opted_in', 'contact.help_requested')
                THEN payload->>'keyword'
            WHEN type IN ('contact.suppressed', 'contact.unsuppressed', 'message.refused')
                THEN payload->>'reason'
            WHEN type = 'number.looked_up' THEN payload->>'carrier_name'
            WHEN type = 'verification.started' OR type = 'verification.checked'
                THEN payload->>'verification_sid'
            -- "0.0079 USD": Twilio's final price, split again by analytics/sql/apply_prices.sql
            WHEN type = 'message.priced'
                THEN (payload->>'amount') || ' ' || (payload->>'price_unit') END AS detail,
       CASE WHEN type = 'number.looked_up' THEN payload->>'line_type' END AS line_type
FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
-- Order by the table's columns, not the output aliases, or the index cannot serve it.
ORDER BY events.tx_id, events.position
LIMIT $3
