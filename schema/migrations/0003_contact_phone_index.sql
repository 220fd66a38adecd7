-- The send path's consent check (schema/sql/contact_state.sql) looks up one phone number's
-- contact facts: opt-outs, opt-ins and suppressions. events_phone_type indexed every event
-- with a phone, so every status callback, send and inbound message paid for an entry that this
-- query never reads: 6 to 9 % of PostgreSQL's CPU per appended status callback (batches of 32,
-- bench/ingest/postgres.py). Only contact facts are indexed now: a small index, and nothing
-- extra to write for the events that come by the thousand.
-- (CREATE INDEX holds off appends while it reads the table once; the ingester spools meanwhile.)
CREATE INDEX events_contact_phone ON events (phone, position)
    WHERE type IN ('contact.opted_out', 'contact.opted_in',
                   'contact.suppressed', 'contact.unsuppressed');
DROP INDEX events_phone_type;
