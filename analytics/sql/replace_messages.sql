-- The batch's messages already in the model take their merged rows (when there are any: a lake
-- statement costs catalog round trips even with nothing to do). Their old rows are in the files
-- written since $first_seen_from, as in apply_messages.sql.
DELETE FROM messages
WHERE first_seen_at >= $first_seen_from AND message_sid IN (SELECT message_sid FROM merged);

INSERT INTO messages BY NAME SELECT * FROM merged
