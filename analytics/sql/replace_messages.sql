-- The batch's messages already in the model take their merged rows (when there are any: a lake
-- statement costs catalog round trips even with nothing to do). Their old rows are in the files
-- written since $first_seen_from, as in apply_messages.sql.
DELETE FROM messages
WHERE first_seen_at >= $first_seen_from AND message_sid IN (SELECT message_sid FROM merged);

-- A number the batch does not name (its events here carry no phone) is as the row had it.
INSERT INTO messages BY NAME
SELECT m.*,
       CASE WHEN d.phone IS NULL THEN o.country ELSE d.country END AS country,
       CASE WHEN d.phone IS NULL THEN o.carrier ELSE d.carrier END AS carrier,
       CASE WHEN d.phone IS NULL THEN o.line_type ELSE d.line_type END AS line_type,
       coalesce(m.sent_at, m.first_seen_at) AS sent_or_seen_at
FROM merged m
LEFT JOIN batch_dims d ON d.phone = m.to_number
LEFT JOIN existing o USING (message_sid)
