-- The numbers' side of a batch, from `changes` (apply_messages.sql: each message of the batch as
-- it was, if its number had it, and as it is now). A message that did not count yet (new, or
-- still on its way: no delivery, no failure, no error code) is added to its number's running
-- figures. A message that counted already and keeps its group, code and time changes nothing.
-- One that counted and now moves (a delivery reported undelivered later, a late send event
-- moving a finished message's time) cannot be taken back out of a max or an arg-max: its number
-- is recomputed from all its messages instead (`recompute`, rare).
CREATE OR REPLACE TEMP TABLE classified AS
SELECT phone, t, error_code, NOT existed AS is_new, d, f,
       existed AND (old_d OR old_f OR old_code IS NOT NULL) AS counted,
       existed AND (old_d OR old_f OR old_code IS NOT NULL)
           AND (old_t IS DISTINCT FROM t OR old_d <> d OR old_f <> f
                OR old_code IS DISTINCT FROM error_code) AS moved
FROM (SELECT *, coalesce(is_delivered(status), false) AS d,
             coalesce(is_failed(status), false) AS f,
             coalesce(is_delivered(old_status), false) AS old_d,
             coalesce(is_failed(old_status), false) AS old_f
      FROM changes);

CREATE OR REPLACE TEMP TABLE recompute AS
SELECT DISTINCT phone FROM classified WHERE moved;

CREATE OR REPLACE TEMP TABLE contribs AS
SELECT phone, t, error_code, is_new, d, f FROM classified
WHERE NOT counted AND phone NOT IN (SELECT phone FROM recompute);

-- The running figures of the numbers the batch changes or touches otherwise (`affected`, the
-- numbers to render: a consent fact, a lookup, an inbound message), with their row ids: one
-- read of number_state for all that the end of the batch needs, the new figures replacing the
-- old by row id (a Parquet file has no index: finding rows by phone reads every number's
-- phone, and the other columns of every row with it).
CREATE OR REPLACE TEMP TABLE state_rows AS
SELECT s.rowid AS rid, s.* FROM number_state s
SEMI JOIN (SELECT phone FROM classified UNION SELECT phone FROM affected) USING (phone);

CREATE OR REPLACE TEMP TABLE base AS
SELECT * EXCLUDE (rid) FROM state_rows SEMI JOIN contribs c USING (phone);
