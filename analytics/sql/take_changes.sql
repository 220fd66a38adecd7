-- The run's changes, one per message: as it was before the run (its earliest pending row's
-- "old" side) and as it is now (its latest row's "new" side). *_null: a NULL is an answer.
CREATE OR REPLACE TEMP TABLE changes AS
SELECT message_sid,
       arg_max_null(phone, seq) AS phone,
       arg_max_null(t, seq) AS t,
       arg_max_null(status, seq) AS status,
       arg_max_null(error_code, seq) AS error_code,
       arg_min_null(existed, seq) AS existed,
       arg_min_null(old_t, seq) AS old_t,
       arg_min_null(old_status, seq) AS old_status,
       arg_min_null(old_code, seq) AS old_code
FROM pending_changes
GROUP BY message_sid
