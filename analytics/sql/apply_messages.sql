-- Fold a batch into `messages`. Times are `occurred_at`: Twilio's time where it gave one
-- (Event Streams, reconcile, backfill), the server's receive time for classic webhooks. Every column merges with an order-free rule (first non-null,
-- earliest, latest, highest status key), so the result does not depend on how the log was cut
-- into batches, nor on the order callbacks arrived in.
CREATE OR REPLACE TEMP TABLE batch_msgs AS
SELECT message_sid,
       any_value(phone) AS to_number,
       any_value(from_number) FILTER (WHERE type = 'message.sent') AS from_number,
       any_value(service_sid) FILTER (WHERE type = 'message.sent') AS messaging_service_sid,
       any_value(category) FILTER (WHERE type = 'message.sent') AS category,
       any_value(source) FILTER (WHERE type = 'message.sent') AS send_source,
       arg_max(status, status_key(status, error_code)) AS status,
       max(status_key(status, error_code)) AS status_key,
       -- The code of the top-ranked callback, none included: plain arg_max skips NULLs and
       -- would keep a failure's code on a message delivered after it (only when both came in
       -- one batch: the merge below takes the winner's code as it is).
       arg_max_null(error_code, status_key(status, error_code)) AS error_code,
       any_value(segments) FILTER (WHERE type = 'message.sent') AS segments,
       min(occurred_at) FILTER (WHERE type = 'message.sent') AS sent_at,
       min(occurred_at) AS first_seen_at,
       min(occurred_at) FILTER (WHERE status IN ('queued', 'accepted')) AS first_queued_at,
       min(occurred_at) FILTER (WHERE type = 'message.status' AND status = 'sent')
           AS first_sent_at,
       min(occurred_at) FILTER (WHERE status = 'delivered') AS delivered_at,
       min(occurred_at) FILTER (WHERE status IN ('undelivered', 'failed')) AS failed_at,
       min(occurred_at) FILTER (WHERE status = 'read') AS read_at,
       max(occurred_at) AS updated_at
FROM batch
WHERE message_sid IS NOT NULL AND type IN ('message.sent', 'message.status')
GROUP BY message_sid;

-- Messages already in the model merge with their row; the rest (most of a batch: a message's
-- events usually travel together) are plain inserts. Deleting and re-inserting only the
-- former keeps each commit's write-ahead log small.
-- None of them was first seen before $first_seen_from (the earliest stored event of the batch's
-- messages, analytics/reader.py): the files written before are skipped by their min/max, so
-- finding them costs what the batch's time span holds, not the whole history.
CREATE OR REPLACE TEMP TABLE existing AS
SELECT m.* FROM messages m SEMI JOIN batch_msgs b USING (message_sid)
WHERE m.first_seen_at >= $first_seen_from;

CREATE OR REPLACE TEMP TABLE merged AS
SELECT b.message_sid,
       coalesce(m.to_number, b.to_number) AS to_number,
       coalesce(m.from_number, b.from_number) AS from_number,
       coalesce(m.messaging_service_sid, b.messaging_service_sid) AS messaging_service_sid,
       coalesce(m.category, b.category) AS category,
       coalesce(m.send_source, b.send_source) AS send_source,
       CASE WHEN coalesce(b.status_key, -1) > coalesce(m.status_key, -1)
            THEN b.status ELSE m.status END AS status,
       greatest(m.status_key, b.status_key) AS status_key,
       CASE WHEN coalesce(b.status_key, -1) > coalesce(m.status_key, -1)
            THEN b.error_code ELSE m.error_code END AS error_code,
       coalesce(m.segments, b.segments) AS segments,
       least(m.sent_at, b.sent_at) AS sent_at,
       least(m.first_seen_at, b.first_seen_at) AS first_seen_at,
       least(m.first_queued_at, b.first_queued_at) AS first_queued_at,
       least(m.first_sent_at, b.first_sent_at) AS first_sent_at,
       least(m.delivered_at, b.delivered_at) AS delivered_at,
       least(m.failed_at, b.failed_at) AS failed_at,
       least(m.read_at, b.read_at) AS read_at,
       greatest(m.updated_at, b.updated_at) AS updated_at
FROM batch_msgs b JOIN existing m USING (message_sid);

-- What each message of the batch was before it (if it was in the model with a number) and is
-- now, as its number sees it: kept for the numbers' update at the end of the run
-- (pending_changes.sql, apply_numbers.sql).
CREATE OR REPLACE TEMP TABLE changes AS
SELECT n.message_sid, n.to_number AS phone, coalesce(n.sent_at, n.first_seen_at) AS t, n.status,
       n.error_code, o.to_number IS NOT NULL AS existed,
       coalesce(o.sent_at, o.first_seen_at) AS old_t, o.status AS old_status,
       o.error_code AS old_code
FROM (SELECT * FROM merged
      UNION ALL BY NAME
      SELECT b.* FROM batch_msgs b ANTI JOIN merged USING (message_sid)) AS n
LEFT JOIN existing o USING (message_sid)
WHERE n.to_number IS NOT NULL;

-- `batch_dims`: the country, carrier and line type of each number the batch names, carried on
-- their messages (analytics.rollup.Rollup keeps them for every number: reading number_info
-- here would cost a scan of all the numbers every tick).
INSERT INTO messages BY NAME
SELECT b.*, d.country, d.carrier, d.line_type,
       coalesce(b.sent_at, b.first_seen_at) AS sent_or_seen_at
FROM batch_msgs b ANTI JOIN merged USING (message_sid)
LEFT JOIN batch_dims d ON d.phone = b.to_number;
