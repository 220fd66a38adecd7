-- The writer's macros, in its own session (DuckLake stores tables and views, not macros).

-- A status's place in a message's life; the highest key is the final status, whatever order
-- the callbacks came in. Unknown statuses rank between sending and sent. partially_delivered
-- (some segments of a multi-segment message delivered) outranks the failures: a receipt that
-- something arrived says more than one that something did not. canceled (a scheduled message
-- withdrawn before sending) ranks under the failures: a failure callback means it was sent.
CREATE OR REPLACE TEMP MACRO status_key(s, code) AS
    CASE WHEN s IS NULL THEN NULL ELSE
        (CASE s WHEN 'scheduled' THEN 10 WHEN 'accepted' THEN 11 WHEN 'queued' THEN 20
                WHEN 'sending' THEN 30 WHEN 'sent' THEN 40 WHEN 'receiving' THEN 41
                WHEN 'received' THEN 50 WHEN 'partially_delivered' THEN 65
                WHEN 'canceled' THEN 60 WHEN 'undelivered' THEN 61 WHEN 'failed' THEN 62
                WHEN 'delivered' THEN 70 WHEN 'read' THEN 80 ELSE 35 END)::BIGINT * 1000000
        + coalesce(code, 0) END;

-- What is known of each number, as `messages` and `numbers` carry it: Lookup's answer first,
-- else what the number itself tells (analytics/phones.py). The rollup keeps it in memory for
-- every number (analytics/rollup.py) and hands render_numbers.sql the touched numbers'.
CREATE OR REPLACE TEMP MACRO number_dims() AS TABLE
    SELECT phone, country,
           coalesce(lookup_carrier, carrier_hint) AS carrier,
           CASE WHEN lookup_carrier IS NOT NULL THEN 'lookup'
                WHEN carrier_hint IS NOT NULL THEN 'hint' END AS carrier_source,
           coalesce(lookup_type, type_hint) AS line_type
    FROM number_info;
