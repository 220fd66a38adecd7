-- Keep the batch's `changes` for the end of the run, tagged with how far the log was applied
-- ($seq): the end of the run takes, per message, what it was before its first change in the run
-- and what it is after its last (take_changes.sql), so the numbers see one change per message
-- however the run's batches cut its events. Appending only: a batch pays for its own rows.
INSERT INTO pending_changes BY NAME SELECT *, $seq AS seq FROM changes;

INSERT INTO dirty_numbers
SELECT DISTINCT phone FROM batch WHERE phone IS NOT NULL
