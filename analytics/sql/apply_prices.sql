-- Fold a batch's message.priced events into `prices`: per message the price of the latest
-- event (by log position) wins, so a price Twilio revised replaces the earlier one whatever
-- batch each arrived in. `detail` carries "<amount> <unit>" (schema/sql/rollup_batch.sql).
CREATE OR REPLACE TEMP TABLE batch_prices AS
SELECT message_sid,
       arg_max(split_part(detail, ' ', 1), position)::DECIMAL(18, 6) AS price,
       arg_max(nullif(split_part(detail, ' ', 2), ''), position) AS price_unit,
       arg_max(occurred_at, position) AS priced_at,
       max(position) AS position
FROM batch
WHERE type = 'message.priced' AND message_sid IS NOT NULL AND detail IS NOT NULL
GROUP BY message_sid;

-- A stored price is no older than its message's earliest event ($first_seen_from bounds them
-- all, analytics/reader.py): older files are skipped by their min/max.
CREATE OR REPLACE TEMP TABLE stored_prices AS
SELECT p.message_sid, p.position FROM prices p SEMI JOIN batch_prices b USING (message_sid)
WHERE p.priced_at >= $first_seen_from;

DELETE FROM prices WHERE priced_at >= $first_seen_from AND message_sid IN (
    SELECT b.message_sid FROM batch_prices b JOIN stored_prices p USING (message_sid)
    WHERE b.position > p.position);

INSERT INTO prices BY NAME
SELECT b.* FROM batch_prices b LEFT JOIN stored_prices p USING (message_sid)
WHERE p.message_sid IS NULL OR b.position > p.position
