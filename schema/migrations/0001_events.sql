-- The event store: one append-only table. Every send, status callback, inbound message and
-- opt-out is a row here, and nothing ever changes a row once written.

CREATE TABLE events (
    -- Global order of insertion. Alone it is NOT a safe cursor: a transaction that took a
    -- lower position may commit after one with a higher position. Readers use (tx_id, position)
    -- below the snapshot horizon instead (see schema/sql/read_after.sql).
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- Derived from the content of the fact, so a retried or duplicated webhook (on any
    -- ingester process) inserts nothing: INSERT ... ON CONFLICT DO NOTHING.
    idempotency_key text NOT NULL,
    type            text NOT NULL,
    version         smallint NOT NULL DEFAULT 1,
    source          text NOT NULL,
    message_sid     text,
    phone           text,            -- the other party (E.164, short code or alphanumeric)
    -- Typed copies of the fields the rollup reads for every row: extracting them from jsonb
    -- is the most expensive part of reading the log back.
    status          text,
    error_code      integer,
    occurred_at     timestamptz NOT NULL,  -- Twilio's time where known, else the receive time
    received_at     timestamptz NOT NULL DEFAULT now(),
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,  -- every field as sent, unknown ones too
    CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT events_type_nonempty CHECK (type <> ''),
    CONSTRAINT events_key_nonempty CHECK (idempotency_key <> '')
);

CREATE INDEX events_tx_position ON events (tx_id, position);
CREATE INDEX events_message_sid ON events (message_sid) WHERE message_sid IS NOT NULL;
CREATE INDEX events_phone_type ON events (phone, type, position) WHERE phone IS NOT NULL;

-- Immutability, first guard: a trigger that refuses every change, whoever asks.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a new event instead (for example contact.unsuppressed)';
END
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Immutability, second guard: the application role may only read and append. Roles are
-- cluster-wide, so create it once and tolerate a concurrent creator.
DO $$
BEGIN
    CREATE ROLE smsledger_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT SELECT, INSERT ON events TO smsledger_app;
