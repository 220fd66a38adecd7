-- Append a batch of events in one statement. $1 is a JSON array of rows, each in the column
-- order below (schema.events.as_json_rows). A row whose idempotency key is already stored
-- (a duplicate or retried webhook) inserts nothing; RETURNING names the keys that were new.
INSERT INTO events (idempotency_key, type, version, source, message_sid, phone, status,
                    error_code, occurred_at, received_at, payload)
SELECT r->>0, r->>1, (r->>2)::int2, r->>3, r->>4, r->>5, r->>6,
       (r->>7)::int4, (r->>8)::timestamptz, (r->>9)::timestamptz, r->10
FROM jsonb_array_elements($1::jsonb) AS r
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING idempotency_key
