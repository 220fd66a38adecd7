-- Least privilege for the running processes. `smsledger migrate` runs as the owner (the user
-- in DATABASE_URL); every other command acts as one of these roles, set when it connects
-- (schema/roles.py):
--   smsledger_app     the ingester: SELECT and INSERT on events (0001), nothing else;
--   smsledger_worker  the worker, rollup, report, reconcile, backfill: SELECT and INSERT on
--                     events, advisory locks (open to every role), and the schema
--                     smsledger_lake, which it owns, for the DuckLake catalog's tables;
--   smsledger_reader  readers of the model (the dashboard, `query`): SELECT on the catalog
--                     tables the worker makes in smsledger_lake, nothing on events.
-- None may UPDATE, DELETE, TRUNCATE or DROP events, nor drop or disable its triggers: only
-- the owner can, so a hijacked ingester or worker cannot rewrite history.

-- Roles are cluster-wide: create it once and tolerate a concurrent creator (as 0001 does).
DO $$
BEGIN
    CREATE ROLE smsledger_worker NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    CREATE ROLE smsledger_reader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT SELECT, INSERT ON events TO smsledger_worker;

-- A superuser may take on any role; a non-superuser owner must be a member of each to connect
-- as them (and, for the worker's, to set its default privileges below).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT smsledger_app, smsledger_worker, smsledger_reader TO %I',
                       current_user);
    END IF;
END
$$;

-- The worker owns the catalog's schema, so it can create, alter and drop its own tables there.
-- IF NOT EXISTS and an owner set apart: another migration may have made the schema first.
CREATE SCHEMA IF NOT EXISTS smsledger_lake;
ALTER SCHEMA smsledger_lake OWNER TO smsledger_worker;
-- CREATE on the database lets the worker make schemas (a lake rebuilt under a new schema, a
-- `CREATE SCHEMA IF NOT EXISTS`, which PostgreSQL checks against this privilege even when the
-- schema exists); it gives no right on events or on any object it does not own.
DO $$
BEGIN
    EXECUTE format('GRANT CREATE ON DATABASE %I TO smsledger_worker', current_database());
END
$$;

-- Readers see what the worker writes there, and change nothing.
GRANT USAGE ON SCHEMA smsledger_lake TO smsledger_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE smsledger_worker IN SCHEMA smsledger_lake
    GRANT SELECT ON TABLES TO smsledger_reader;
