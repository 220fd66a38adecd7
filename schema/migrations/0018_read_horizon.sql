-- The gap-free readers' horizon, per database. pg_snapshot_xmin(pg_current_snapshot()) is the
-- oldest transaction in flight on the whole server: a long transaction in ANOTHER database (a
-- CREATE DATABASE, another application's batch job) held every reader here back, although it
-- can never write to this database's events. So the horizon skips the in-flight transactions
-- positively known to belong to another database (a live backend connected elsewhere holding
-- that transaction id), and keeps every other one, whatever it is: one that finished or
-- vanished from pg_locks since the snapshot was taken, a prepared transaction, one of ours.
--
-- STABLE, so that it runs on the calling statement's snapshot: the horizon must come from the
-- same snapshot the events are read with, or a transaction committing in between could be
-- passed unseen.
CREATE OR REPLACE FUNCTION read_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    WITH s AS (SELECT pg_current_snapshot() AS snap)
    SELECT coalesce(min(x), (SELECT pg_snapshot_xmax(snap) FROM s))
    FROM s, pg_snapshot_xip(s.snap) AS x
    WHERE NOT EXISTS (
        SELECT 1
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
          -- pg_locks names the 32-bit xid; x is its 64-bit form.
          AND l.transactionid::text::numeric = x::text::numeric % 4294967296
          AND a.datname IS NOT NULL AND a.datname <> current_database())
$$;
