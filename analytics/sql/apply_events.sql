INSERT INTO events
SELECT position, tx_id, type, source, message_sid, phone, status, error_code, occurred_at,
       received_at, category, detail
FROM batch
