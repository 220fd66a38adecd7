-- What the readers of the DuckDB model share, defined once: the verdict order and the filtered
-- view of messages the dashboard's filters select (the status groups: schema/duckdb/status.sql,
-- run first).
-- TEMP macros: a read-only snapshot connection can create them, and each connection (each
-- cursor) gets its own from analytics.queries.prepare.

-- The hygiene report's order: what to remove first.
CREATE OR REPLACE TEMP MACRO verdict_rank(verdict) AS
    CASE verdict WHEN 'remove' THEN 0 WHEN 'unreachable' THEN 1 WHEN 'blocked' THEN 2 ELSE 3 END;

-- A time floored to a whole number of microseconds since the epoch in UTC (a day, an hour):
-- date_trunc and date_part on TIMESTAMPTZ go through ICU's calendar, 4-5x slower per row than
-- this arithmetic, and a chart reads every message.
-- (`%` keeps the sign of the dividend: the double modulo floors times before 1970 too.)
CREATE OR REPLACE TEMP MACRO utc_floor(ts, unit_us) AS
    make_timestamptz(epoch_us(ts) - (epoch_us(ts) % unit_us + unit_us) % unit_us);
-- The hour of the day (0-23, UTC).
CREATE OR REPLACE TEMP MACRO utc_hour(ts) AS
    (epoch_us(ts) % 86400000000 + 86400000000) % 86400000000 // 3600000000;

-- message_facts under the dashboard's filters (analytics.queries.Filters); a NULL filter
-- selects everything.
CREATE OR REPLACE TEMP MACRO facts_in(f_start, f_end, f_sender, f_category, f_country) AS TABLE
    SELECT * FROM message_facts
    WHERE (f_start IS NULL OR sent_or_seen_at >= f_start)
      AND (f_end IS NULL OR sent_or_seen_at < f_end)
      AND (f_sender IS NULL OR coalesce(from_number, messaging_service_sid) = f_sender)
      AND (f_category IS NULL OR category = f_category)
      AND (f_country IS NULL OR country = f_country);

-- The same, with a column per dimension a chart can group by (unknowns named 'unknown'), and
-- `scope` = 'all' for no grouping: a query picks one with COLUMNS(lambda c: c = $dim).
CREATE OR REPLACE TEMP MACRO facts_by(f_start, f_end, f_sender, f_category, f_country) AS TABLE
    SELECT * REPLACE (coalesce(carrier, 'unknown') AS carrier,
                      coalesce(country, 'unknown') AS country,
                      coalesce(category, 'unknown') AS category),
           utc_floor(sent_or_seen_at, 86400000000) AS "day",
           utc_floor(sent_or_seen_at, 3600000000) AS hourly,
           utc_hour(sent_or_seen_at) AS "hour",
           coalesce(from_number, messaging_service_sid, 'unknown') AS sender,
           'all' AS scope
    FROM facts_in(f_start, f_end, f_sender, f_category, f_country);
