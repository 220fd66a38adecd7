-- Least privilege for the running processes. `smsledger migrate` runs as the owner (the user
-- in DATABASE_URL); every other command acts as one of two roles, set when it connects
-- (schema/roles.py):
--   smsledger_app     the ingester: SELECT and INSERT on events (0001), nothing else;
--   smsledger_worker  the worker, rollup, report, reconcile, backfill: SELECT and INSERT on
--                     events, advisory locks (open to every role), and the schema
--                     smsledger_lake, which it owns, for the DuckLake catalog's tables.
-- Neither may UPDATE, DELETE, TRUNCATE or DROP events, nor drop or disable its triggers: only
-- the owner can, so a hijacked ingester or worker cannot rewrite history.

-- Roles are cluster-wide: create it once and tolerate a concurrent creator (as 0001 does).
DO $$
BEGIN
    CREATE ROLE smsledger_worker NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT SELECT, INSERT ON events TO smsledger_worker;

-- The worker owns the catalog's schema, so it can create, alter and drop its own tables there.
-- It has no CREATE on the database: the schema is made here, not by the worker (a
-- `CREATE SCHEMA IF NOT EXISTS` by the worker would be refused even when the schema exists).
CREATE SCHEMA smsledger_lake AUTHORIZATION smsledger_worker;

-- A superuser may take on any role; a non-superuser owner must be a member of both to connect
-- as them.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT smsledger_app, smsledger_worker TO %I', current_user);
    END IF;
END
$$;
