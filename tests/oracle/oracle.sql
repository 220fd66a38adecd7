-- The test oracle: every figure the dashboard and the hygiene report show, computed again
-- straight from PostgreSQL's `events` table. Written from the README's rules, the Twilio facts
-- (/work/shared/TWILIO.md) and the hygiene rules file read as data, NOT from the analytics
-- code: where the two disagree, one of them is wrong, and a test says which figure.
--
-- `setup` makes session-local (TEMP) relations; every other query reads them. Reference data
-- the event log does not hold comes in as parameters and TEMP tables filled by the loader:
-- `oracle_phones` (country and carrier hint per number, from phonenumbers' public API, the
-- documented source), `oracle_error_codes` (schema/data/error_codes.csv) and `oracle_rules`
-- (analytics/hygiene_rules.toml). Filters are optional parameters written
-- `($n IS NULL OR col = $n)`.

-- name: setup
-- Status rank (TWILIO.md's status list): a message moves queued/accepted/scheduled → sending →
-- sent → a terminal status; delivered outranks a failure (a delivery receipt is the strongest
-- evidence), read outranks delivered. A status Twilio adds later (unknown here) is stored;
-- it counts as in flight: above the hand-off statuses and `sending`, below `sent`.
CREATE TEMP TABLE oracle_rank (status text PRIMARY KEY, rank int NOT NULL);
INSERT INTO oracle_rank VALUES
    ('queued', 10), ('accepted', 10), ('scheduled', 10), ('sending', 20),
    ('sent', 40), ('canceled', 50), ('undelivered', 50), ('failed', 50),
    ('partially_delivered', 60), ('delivered', 70), ('read', 80);
CREATE TEMP TABLE oracle_phones (phone text PRIMARY KEY, country text, carrier text);
CREATE TEMP TABLE oracle_error_codes (code int PRIMARY KEY, meaning text, class text);
CREATE TEMP TABLE oracle_rules (kind text NOT NULL, code int NOT NULL);
CREATE TEMP TABLE oracle_settings (min_failures int NOT NULL, min_days int NOT NULL);
-- One row per outbound message: known from its send, from its status callbacks, or both.
CREATE TEMP VIEW oracle_statuses AS
    SELECT e.message_sid, e.status, e.error_code, e.occurred_at, e.position, e.phone,
           coalesce(r.rank, 30) AS rank
    FROM events e LEFT JOIN oracle_rank r ON r.status = e.status
    WHERE e.type = 'message.status';
CREATE TEMP VIEW oracle_messages AS
WITH sends AS (
    SELECT DISTINCT ON (message_sid) message_sid, occurred_at AS sent_at, phone,
           payload ->> 'from' AS sender, payload ->> 'category' AS category
    FROM events WHERE type = 'message.sent' ORDER BY message_sid, position
), final AS (
    SELECT DISTINCT ON (message_sid) message_sid, status, error_code, occurred_at AS final_at
    FROM oracle_statuses ORDER BY message_sid, rank DESC, position
), seen AS (
    SELECT message_sid, min(occurred_at) AS first_status_at,
           min(occurred_at) FILTER (WHERE status = 'delivered') AS delivered_at,
           bool_or(rank >= 40 AND status NOT IN ('failed', 'canceled')) AS reached_carrier,
           -- the callback's To and From: the number and sender of a message we never saw sent
           (array_agg(phone ORDER BY position) FILTER (WHERE phone IS NOT NULL))[1] AS phone
    FROM oracle_statuses GROUP BY message_sid
), sids AS (
    SELECT message_sid FROM sends UNION SELECT message_sid FROM oracle_statuses
)
SELECT m.message_sid, coalesce(s.phone, seen.phone) AS phone, s.sender, s.category,
       s.sent_at, coalesce(s.sent_at, seen.first_status_at) AS day_at,
       f.status, f.error_code, f.final_at, seen.delivered_at,
       f.status IN ('delivered', 'read') AS delivered,
       f.status IN ('undelivered', 'failed') AS failed,
       coalesce(seen.reached_carrier, false) AS reached_carrier,
       extract(epoch FROM seen.delivered_at - s.sent_at)::float8 AS latency_s
FROM sids m
LEFT JOIN sends s USING (message_sid)
LEFT JOIN final f USING (message_sid)
LEFT JOIN seen USING (message_sid);
-- Country and carrier of each number: a Lookup answer (kept as an event) first, else the hint.
CREATE TEMP VIEW oracle_numbers AS
    SELECT p.phone, p.country,
           coalesce((SELECT l.payload ->> 'carrier_name' FROM events l
                     WHERE l.type = 'number.looked_up' AND l.phone = p.phone
                     ORDER BY l.position DESC LIMIT 1), p.carrier) AS carrier
    FROM oracle_phones p;
CREATE TEMP VIEW oracle_facts AS
    SELECT m.*, coalesce(n.country, 'unknown') AS country,
           coalesce(n.carrier, 'unknown') AS carrier,
           coalesce(m.sender, 'unknown') AS sender_or_unknown,
           coalesce(m.category, 'unknown') AS category_or_unknown
    FROM oracle_messages m LEFT JOIN oracle_numbers n ON n.phone = m.phone;
-- The messages one filter keeps, refilled by the `filtered` query before each figure.
CREATE TEMP TABLE oracle_filtered AS SELECT * FROM oracle_facts WITH NO DATA;

-- name: filtered
-- The messages a filter keeps (start inclusive, end exclusive, on the send time or, for a
-- message known only from callbacks, its first callback).
INSERT INTO oracle_filtered SELECT * FROM oracle_facts
WHERE ($1::timestamptz IS NULL OR day_at >= $1) AND ($2::timestamptz IS NULL OR day_at < $2)
  AND ($3::text IS NULL OR sender = $3) AND ($4::text IS NULL OR category = $4)
  AND ($5::text IS NULL OR country = $5)

-- name: overview
SELECT count(*) AS sends, count(*) FILTER (WHERE delivered) AS delivered,
       count(*) FILTER (WHERE failed) AS failed,
       (count(*) FILTER (WHERE delivered))::float8
           / nullif(count(*) FILTER (WHERE delivered OR failed), 0) AS delivery_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s)
           FILTER (WHERE category = 'otp') AS otp_median_s
FROM oracle_filtered

-- name: delivery_by
-- $1: the dimension's column in oracle_filtered (checked by the loader against a fixed list).
SELECT dim, count(*) AS messages, count(*) FILTER (WHERE delivered) AS delivered,
       count(*) FILTER (WHERE failed) AS failed,
       (count(*) FILTER (WHERE delivered))::float8
           / nullif(count(*) FILTER (WHERE delivered OR failed), 0) AS delivery_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s) AS median_latency_s
FROM (SELECT *, CASE $1::text
        WHEN 'day' THEN to_char(day_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
        WHEN 'hourly' THEN to_char(day_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')
        WHEN 'carrier' THEN carrier WHEN 'country' THEN country
        WHEN 'sender' THEN sender_or_unknown WHEN 'category' THEN category_or_unknown
      END AS dim FROM oracle_filtered) f
GROUP BY dim

-- name: status_funnel
SELECT count(*) AS handed, count(*) FILTER (WHERE reached_carrier) AS sent_to_carrier,
       count(*) FILTER (WHERE delivered) AS delivered
FROM oracle_filtered

-- name: error_breakdown
SELECT f.error_code, c.meaning, c.class, count(*) AS messages,
       count(*)::float8 / sum(count(*)) OVER () AS share,
       array_agg(DISTINCT f.carrier) AS carriers, array_agg(DISTINCT f.country) AS countries
FROM oracle_filtered f LEFT JOIN oracle_error_codes c ON c.code = f.error_code
WHERE f.error_code IS NOT NULL
GROUP BY f.error_code, c.meaning, c.class

-- name: error_trend
-- By the UTC day the error was reported (the failing status's time).
SELECT to_char(final_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, error_code, count(*) AS messages
FROM oracle_filtered WHERE error_code IS NOT NULL GROUP BY 1, 2

-- name: otp_latency
-- $1: NULL (all), 'carrier', 'country' or 'hour' (UTC hour of the send).
SELECT CASE $1::text WHEN 'carrier' THEN carrier WHEN 'country' THEN country
                     WHEN 'hour' THEN extract(hour FROM sent_at AT TIME ZONE 'UTC')::text
                     ELSE 'all' END AS dim,
       count(*) AS delivered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s) AS p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_s) AS p90_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_s) AS p99_s
FROM oracle_filtered WHERE category = 'otp' AND latency_s IS NOT NULL
GROUP BY 1

-- name: otp_latencies
SELECT latency_s FROM oracle_filtered WHERE category = 'otp' AND latency_s IS NOT NULL

-- name: verify
-- Verify conversion: verifications started, and checks Twilio approved.
SELECT count(*) FILTER (WHERE type = 'verification.started') AS started,
       count(*) FILTER (WHERE type = 'verification.checked' AND status = 'approved')
           AS approved
FROM events WHERE type IN ('verification.started', 'verification.checked')

-- name: opt_outs
-- STOP/START/HELP facts by UTC day, kind and the keyword used.
SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
       substr(type, length('contact.') + 1) AS kind, payload ->> 'keyword' AS keyword,
       count(*) AS events
FROM events
WHERE type IN ('contact.opted_out', 'contact.opted_in', 'contact.help_requested')
GROUP BY 1, 2, 3

-- name: hygiene
-- Each number's verdict by the rules file. The README words the rules per send ("30003 on at
-- least 3 sends over at least 2 distinct UTC days with no delivery in between"), so a failure
-- or a delivery is placed at its message's send time (callbacks arrive late and out of order;
-- the send is what the list owner did). STOP/START are placed at their own time. Precedence
-- when several rules hold: consent first (opted out), then remove, blocked, unreachable.
WITH per_message AS (
    SELECT phone, delivered, failed, error_code, day_at AS final_at, day_at AS delivered_at
    FROM oracle_messages WHERE phone IS NOT NULL
), last_delivery AS (
    SELECT phone, max(delivered_at) FILTER (WHERE delivered) AS last_delivered_at
    FROM per_message GROUP BY phone
), failures AS (
    SELECT p.phone, p.error_code, p.final_at,
           p.final_at > coalesce(d.last_delivered_at, '-infinity') AS since_delivery
    FROM per_message p JOIN last_delivery d USING (phone) WHERE p.failed
), consent AS (
    -- the latest consent fact per number: STOP/START keywords and 21610 refusals
    SELECT DISTINCT ON (phone) phone, opted_out FROM (
        SELECT phone, occurred_at AS at, type = 'contact.opted_out' AS opted_out, position
        FROM events WHERE type IN ('contact.opted_out', 'contact.opted_in')
        UNION ALL
        -- a 21610 with a delivery after it is over: Twilio refuses every send to an
        -- opted-out number, so that delivery proves the number opted back in
        SELECT phone, final_at, true, 0 FROM failures
        WHERE since_delivery
          AND error_code IN (SELECT code FROM oracle_rules WHERE kind = 'opt_out')
    ) c ORDER BY phone, at DESC, position DESC
), stats AS (
    SELECT p.phone, count(*) AS sends, count(*) FILTER (WHERE p.delivered) AS deliveries,
           count(*) FILTER (WHERE p.failed) AS failures,
           max(p.delivered_at) FILTER (WHERE p.delivered) AS last_delivered_at
    FROM per_message p GROUP BY p.phone
), fstats AS (
    SELECT phone, min(final_at) AS first_failure_at, max(final_at) AS last_failure_at,
           count(*) FILTER (WHERE since_delivery) AS consecutive_failures,
           bool_or(since_delivery AND error_code IN (
               SELECT code FROM oracle_rules WHERE kind = 'permanent')) AS permanent,
           bool_or(since_delivery AND error_code IN (
               SELECT code FROM oracle_rules WHERE kind = 'blocked')) AS blocked,
           count(*) FILTER (WHERE since_delivery AND error_code IN (
               SELECT code FROM oracle_rules WHERE kind = 'unreachable')) AS unreachable_n,
           count(DISTINCT (final_at AT TIME ZONE 'UTC')::date) FILTER (
               WHERE since_delivery AND error_code IN (
                   SELECT code FROM oracle_rules WHERE kind = 'unreachable'))
               AS unreachable_days
    FROM failures GROUP BY phone
), codes AS (
    SELECT phone, jsonb_object_agg(error_code::text, n) AS error_codes FROM (
        SELECT phone, error_code, count(*) AS n FROM failures
        WHERE error_code IS NOT NULL GROUP BY 1, 2) c GROUP BY phone
), phones AS (
    SELECT phone FROM stats UNION SELECT phone FROM consent
)
SELECT ph.phone,
       CASE WHEN coalesce(c.opted_out, false) THEN 'opted_out'
            WHEN coalesce(f.permanent, false) THEN 'remove'
            WHEN coalesce(f.blocked, false) THEN 'blocked'
            WHEN f.unreachable_n >= (SELECT min_failures FROM oracle_settings)
             AND f.unreachable_days >= (SELECT min_days FROM oracle_settings) THEN 'unreachable'
            ELSE 'ok' END AS verdict,
       coalesce(s.sends, 0) AS sends, coalesce(s.deliveries, 0) AS deliveries,
       coalesce(s.failures, 0) AS failures,
       coalesce(f.consecutive_failures, 0) AS consecutive_failures,
       f.first_failure_at, f.last_failure_at, s.last_delivered_at,
       coalesce(k.error_codes, '{}'::jsonb) AS error_codes
FROM phones ph
LEFT JOIN stats s USING (phone) LEFT JOIN fstats f USING (phone)
LEFT JOIN consent c USING (phone) LEFT JOIN codes k USING (phone)

-- name: timeline
-- A SID's or a number's events, in the order they were stored.
SELECT type, status, error_code, message_sid, phone FROM events
WHERE message_sid = $1 OR phone = $1 ORDER BY position
