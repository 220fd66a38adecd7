INSERT INTO events
SELECT position, tx_id, type, source, message_sid, phone, status, error_code, occurred_at,
       received_at, category, detail
FROM batch;

INSERT INTO contact_events
SELECT position, type, phone, occurred_at, detail FROM batch WHERE type LIKE 'contact.%'
