-- The analytics model, a DuckLake (see analytics/lake.py) written by one process (the rollup).
-- Every table is a pure function of the event log: a rebuild from scratch gives the same rows.
-- DuckLake has no primary keys or indexes: the keys are unique by construction, and the tests
-- check that they are.

CREATE TABLE IF NOT EXISTS rollup_cursor (
    id          INTEGER NOT NULL,          -- always 1
    tx_id       UBIGINT NOT NULL,
    position    BIGINT NOT NULL,
    events      BIGINT NOT NULL,           -- events applied so far
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The event timeline (the audit trail), without the raw payload.
CREATE TABLE IF NOT EXISTS events (
    position     BIGINT NOT NULL,
    tx_id        UBIGINT NOT NULL,
    type         VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,
    message_sid  VARCHAR,
    phone        VARCHAR,
    status       VARCHAR,
    error_code   INTEGER,
    occurred_at  TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    category     VARCHAR,
    detail       VARCHAR
);

-- No primary keys on the tables below: each batch replaces the rows it touches (DELETE, then
-- INSERT), and DuckDB's index upkeep made that the slowest part of a large rollup. The tests
-- check that every key is unique.

-- The contact facts alone (opt-outs, opt-ins, suppressions): the hygiene refresh reads them
-- for every batch, and the full timeline is too large to scan each time.
CREATE TABLE IF NOT EXISTS contact_events (
    position     BIGINT NOT NULL,
    type         VARCHAR NOT NULL,
    phone        VARCHAR,
    occurred_at  TIMESTAMPTZ NOT NULL,
    detail       VARCHAR
);

-- What a rollup run has changed and the numbers have not taken yet; each batch adds to both in
-- its own transaction, and the end of the run takes them into `number_state` and `numbers`
-- and empties them in one transaction (analytics/rollup.py). Once per run instead of once per
-- batch: a backlog's numbers are updated once, not once per batch; a crash in between leaves
-- them here for the next run.
CREATE TABLE IF NOT EXISTS dirty_numbers (
    phone VARCHAR NOT NULL                  -- a number to render again (any event with it)
);

-- Per batch and message the run touched: as it was before the batch, if its number had counted
-- it, and as it is after (analytics/sql/apply_messages.sql, pending_changes.sql,
-- take_changes.sql).
CREATE TABLE IF NOT EXISTS pending_changes (
    seq          BIGINT NOT NULL,           -- events applied when the batch committed
    message_sid  VARCHAR NOT NULL,
    phone        VARCHAR NOT NULL,
    t            TIMESTAMPTZ,
    status       VARCHAR,
    error_code   INTEGER,
    existed      BOOLEAN NOT NULL,
    old_t        TIMESTAMPTZ,
    old_status   VARCHAR,
    old_code     INTEGER
);

-- One row per outbound message (inbound ones are in the timeline). `status` is the final status by rank: a late or duplicated callback
-- never moves it backwards.
CREATE TABLE IF NOT EXISTS messages (
    message_sid            VARCHAR NOT NULL,       -- unique by construction (merge)
    to_number              VARCHAR,
    from_number            VARCHAR,
    messaging_service_sid  VARCHAR,
    category               VARCHAR,
    send_source            VARCHAR,            -- api, webhook, reconcile, backfill
    status                 VARCHAR,
    status_key             BIGINT,             -- rank of status, then error code: max wins
    error_code             INTEGER,
    segments               INTEGER,
    sent_at                TIMESTAMPTZ,        -- when it was handed to Twilio
    first_seen_at          TIMESTAMPTZ,        -- the earliest event of the message
    first_queued_at        TIMESTAMPTZ,
    first_sent_at          TIMESTAMPTZ,
    delivered_at           TIMESTAMPTZ,
    failed_at              TIMESTAMPTZ,        -- first undelivered or failed
    read_at                TIMESTAMPTZ,
    updated_at             TIMESTAMPTZ,
    -- The number's, as `numbers` has them (analytics/sql/apply_messages.sql; rewritten when a
    -- Lookup answer lands, apply_lookups.sql): the dashboard's charts group and filter by
    -- them, and a join with `numbers` per query cost 15x the scan of `messages`.
    country                VARCHAR,
    carrier                VARCHAR,
    line_type              VARCHAR,
    -- coalesce(sent_at, first_seen_at), the time every analysis files a message under: a
    -- column of its own, so that a filter on it skips the files outside the range (their
    -- min/max), and the cost of a chart or a detector follows its range, not the history.
    sent_or_seen_at        TIMESTAMPTZ
);
-- Models written before these columns get them (filled by analytics.model.open_model).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS country VARCHAR;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS carrier VARCHAR;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS line_type VARCHAR;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS sent_or_seen_at TIMESTAMPTZ;

-- Twilio's final price per message (message.priced; the latest wins), apart from the
-- estimate analytics/cost.py makes from the price table until it arrives.
CREATE TABLE IF NOT EXISTS prices (
    message_sid  VARCHAR NOT NULL,          -- unique by construction (apply_prices.sql)
    price        DECIMAL(18, 6) NOT NULL,   -- money paid, positive
    price_unit   VARCHAR,
    priced_at    TIMESTAMPTZ,
    position     BIGINT NOT NULL
);

-- Per number, what Python knows from the number itself (country, the phonenumbers carrier
-- hint) and what Lookup v2 said, if it was asked.
CREATE TABLE IF NOT EXISTS number_info (
    phone          VARCHAR NOT NULL,              -- unique by construction
    country        VARCHAR,
    carrier_hint   VARCHAR,
    type_hint      VARCHAR,
    lookup_carrier VARCHAR,
    lookup_type    VARCHAR,
    looked_up_at   TIMESTAMPTZ
);

-- Per number, the running figures its row in `numbers` is made from (analytics/sql/
-- number_state.sql): a batch adds the messages it brings to them instead of reading all the
-- number's messages again, so its cost follows the batch, not the number's history. The
-- "since" figures cover the messages after the last delivery. Internal: query `numbers`.
CREATE TABLE IF NOT EXISTS number_state (
    phone                 VARCHAR NOT NULL,       -- unique by construction
    sends                 INTEGER NOT NULL,
    deliveries            INTEGER NOT NULL,
    failures              INTEGER NOT NULL,
    last_delivered_at     TIMESTAMPTZ,
    first_failure_at      TIMESTAMPTZ,
    last_failure_at       TIMESTAMPTZ,
    last_error            INTEGER,             -- the code of the newest message with one
    last_error_at         TIMESTAMPTZ,
    code_counts           STRUCT(code INTEGER, n INTEGER)[],   -- messages per error code
    error_codes           VARCHAR,             -- code_counts as "30003x4, 30005x1"
    since_at              TIMESTAMPTZ,         -- newest failure or coded message since
    consecutive_failures  INTEGER NOT NULL,
    unreachable_failures  INTEGER NOT NULL,
    unreachable_days      TIMESTAMPTZ[],       -- the days (UTC) of those failures
    permanent_code        INTEGER,
    permanent_at          TIMESTAMPTZ,
    permanent_failures    INTEGER NOT NULL,
    blocked_code          INTEGER,
    blocked_at            TIMESTAMPTZ,
    opt_out_code_at       TIMESTAMPTZ
);

-- What number_state was computed under (analytics.rollup.Rollup.figures_digest: the hygiene
-- rules and the SQL that keeps it): when it differs, every number is counted again.
CREATE TABLE IF NOT EXISTS number_state_version (
    digest VARCHAR NOT NULL
);

-- Per number state and its hygiene verdict, rendered for the numbers each batch touches.
CREATE TABLE IF NOT EXISTS numbers (
    phone                 VARCHAR NOT NULL,       -- unique by construction
    country               VARCHAR,
    carrier               VARCHAR,
    carrier_source        VARCHAR,             -- lookup or hint
    line_type             VARCHAR,
    sends                 INTEGER,
    deliveries            INTEGER,
    failures              INTEGER,
    consecutive_failures  INTEGER,
    last_error            INTEGER,
    first_failure_at      TIMESTAMPTZ,
    last_failure_at       TIMESTAMPTZ,
    last_delivered_at     TIMESTAMPTZ,
    opted_out             BOOLEAN,
    opted_out_at          TIMESTAMPTZ,
    suppressed            BOOLEAN,
    error_codes           VARCHAR,             -- "30003x4, 30005x1"
    verdict               VARCHAR,             -- ok, remove, unreachable, blocked, opted_out
    reason                VARCHAR,
    action                VARCHAR
);

CREATE TABLE IF NOT EXISTS error_codes (
    code               INTEGER NOT NULL,      -- unique
    meaning            VARCHAR NOT NULL,
    class              VARCHAR NOT NULL,
    catalogue_version  VARCHAR NOT NULL
);

CREATE OR REPLACE VIEW status_changes AS
    SELECT message_sid, status, error_code, received_at, position, source
    FROM events WHERE type = 'message.status';

CREATE OR REPLACE VIEW message_facts AS
    SELECT m.*,
           e.class AS error_class,
           e.meaning AS error_meaning,
           -- Not epoch(delivered_at - sent_at): ICU's calendar subtraction of two
           -- TIMESTAMPTZ costs 20x this, and every chart of latency reads every message.
           (epoch_us(m.delivered_at) - epoch_us(m.sent_at)) / 1e6 AS latency_s
    FROM messages m
    LEFT JOIN error_codes e ON e.code = m.error_code;

CREATE OR REPLACE VIEW daily AS
    SELECT date_trunc('day', sent_or_seen_at) AS day,
           category, country, carrier, coalesce(from_number, messaging_service_sid) AS sender,
           count(*) AS messages,
           count(*) FILTER (WHERE status IN ('delivered', 'read', 'partially_delivered'))
               AS delivered,
           count(*) FILTER (WHERE status IN ('undelivered', 'failed')) AS failed,
           sum(segments) FILTER (WHERE status IS DISTINCT FROM 'canceled') AS segments
    FROM message_facts
    GROUP BY ALL;
