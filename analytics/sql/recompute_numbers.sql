-- Every message of the numbers in `recompute` counts again, from nothing.
CREATE OR REPLACE TEMP TABLE contribs AS
SELECT to_number AS phone, coalesce(sent_at, first_seen_at) AS t, error_code, true AS is_new,
       coalesce(is_delivered(status), false) AS d, coalesce(is_failed(status), false) AS f
FROM messages
WHERE to_number IN (SELECT phone FROM recompute);

CREATE OR REPLACE TEMP TABLE base AS
SELECT * FROM number_state LIMIT 0;
