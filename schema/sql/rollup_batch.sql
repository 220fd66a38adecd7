-- One batch for the rollup (analytics/reader.py), gap-free. A reader that checkpoints by
-- position alone can skip an event whose transaction commits after a later one. So read in
-- (tx_id, position) order and only below the oldest transaction still in flight in this
-- database (read_horizon()), computed in this same statement: every transaction below that
-- horizon has committed or aborted, so nothing can later appear behind the cursor.
-- The few payload fields the model needs are extracted only for the event types that carry
-- them: status callbacks, the bulk of the log, pay for no jsonb extraction at all.
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
                THEN (payload->>'amount') || ' ' || (payload->>'price_unit')
            -- The whole alert (rule, segment, observed, baseline, text) for the Alerts page.
            WHEN type IN ('alert.opened', 'alert.resolved') THEN payload::text END AS detail,
       CASE WHEN type = 'number.looked_up' THEN payload->>'line_type' END AS line_type
FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < read_horizon()   -- pg_snapshot_xmin, ignoring other databases (migration 0018)
-- Order by the table's columns, not the output aliases, or the index cannot serve it.
ORDER BY events.tx_id, events.position
LIMIT $3
