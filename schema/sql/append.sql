-- Append a batch of events in one statement. A row whose idempotency key is already stored
-- (a duplicate or retried webhook) inserts nothing; RETURNING names the keys that were new.
INSERT INTO events (idempotency_key, type, version, source, message_sid, phone, status,
                    error_code, occurred_at, received_at, payload)
SELECT *
FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::int4[], $9::timestamptz[], $10::timestamptz[], $11::jsonb[])
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING idempotency_key
