-- Recompute the numbers a batch touched, and their hygiene verdicts, from `messages` and the
-- contact facts. The rules are parameters ($permanent_codes, ...): configuration, versioned
-- with the report. "After the last delivery" is what makes failures consecutive.
CREATE OR REPLACE TEMP TABLE fresh_numbers AS
WITH msgs AS (
    SELECT to_number AS phone, coalesce(sent_at, first_seen_at) AS t, status, error_code
    FROM messages
    WHERE to_number IN (SELECT phone FROM affected)
),
per AS (
    SELECT phone,
           count(*) AS sends,
           count(*) FILTER (WHERE status IN ('delivered', 'read', 'partially_delivered'))
               AS deliveries,
           count(*) FILTER (WHERE status IN ('undelivered', 'failed')) AS failures,
           max(t) FILTER (WHERE status IN ('delivered', 'read', 'partially_delivered'))
               AS last_delivered_at,
           min(t) FILTER (WHERE status IN ('undelivered', 'failed')) AS first_failure_at,
           max(t) FILTER (WHERE status IN ('undelivered', 'failed')) AS last_failure_at,
           arg_max(error_code, t) FILTER (WHERE error_code IS NOT NULL) AS last_error
    FROM msgs GROUP BY phone
),
consent AS (
    -- The newest consent fact by its own time (log order breaks ties): a START that Event
    -- Streams delivers late, older than a STOP already stored, does not undo the STOP.
    SELECT phone,
           arg_max(type, (occurred_at, position)) FILTER (
               WHERE type IN ('contact.opted_out', 'contact.opted_in')) = 'contact.opted_out'
               AS opted_out,
           max(occurred_at) FILTER (WHERE type = 'contact.opted_out') AS opted_out_at,
           max(occurred_at) FILTER (WHERE type = 'contact.opted_in') AS opted_in_at,
           arg_max(detail, (occurred_at, position)) FILTER (WHERE type = 'contact.opted_out')
               AS keyword,
           arg_max(type, position) FILTER (
               WHERE type IN ('contact.suppressed', 'contact.unsuppressed'))
               = 'contact.suppressed' AS suppressed
    FROM contact_events
    WHERE phone IN (SELECT phone FROM affected)
    GROUP BY phone
),
since AS (
    SELECT m.phone,
           count(*) FILTER (WHERE m.status IN ('undelivered', 'failed')) AS consecutive_failures,
           count(*) FILTER (WHERE list_contains($unreachable_codes, m.error_code))
               AS unreachable_failures,
           count(DISTINCT date_trunc('day', m.t)) FILTER (
               WHERE list_contains($unreachable_codes, m.error_code)) AS unreachable_days,
           arg_max(m.error_code, m.t) FILTER (WHERE list_contains($permanent_codes, m.error_code))
               AS permanent_code,
           count(*) FILTER (WHERE list_contains($permanent_codes, m.error_code))
               AS permanent_failures,
           arg_max(m.error_code, m.t) FILTER (WHERE list_contains($blocked_codes, m.error_code))
               AS blocked_code,
           max(m.t) FILTER (WHERE list_contains($opt_out_codes, m.error_code))
               AS opt_out_code_at
    FROM msgs m LEFT JOIN per p USING (phone)
    WHERE p.last_delivered_at IS NULL OR m.t > p.last_delivered_at
    GROUP BY m.phone
),
codes AS (
    SELECT phone, string_agg(error_code || 'x' || n, ', ' ORDER BY n DESC, error_code)
               AS error_codes
    FROM (SELECT phone, error_code, count(*) AS n FROM msgs WHERE error_code IS NOT NULL
          GROUP BY ALL) AS c
    GROUP BY phone
),
judged AS (
    SELECT a.phone, i.country,
           coalesce(i.lookup_carrier, i.carrier_hint) AS carrier,
           CASE WHEN i.lookup_carrier IS NOT NULL THEN 'lookup'
                WHEN i.carrier_hint IS NOT NULL THEN 'hint' END AS carrier_source,
           coalesce(i.lookup_type, i.type_hint) AS line_type,
           coalesce(p.sends, 0) AS sends, coalesce(p.deliveries, 0) AS deliveries,
           coalesce(p.failures, 0) AS failures,
           coalesce(s.consecutive_failures, 0) AS consecutive_failures,
           p.last_error, p.first_failure_at, p.last_failure_at, p.last_delivered_at,
           coalesce(c.opted_out, false)
               OR s.opt_out_code_at > coalesce(c.opted_in_at, '-infinity'::TIMESTAMPTZ)
               AS opted_out,
           c.opted_out_at, coalesce(c.suppressed, false) AS suppressed, k.error_codes,
           c.keyword, s.permanent_code, s.permanent_failures, s.unreachable_failures,
           s.unreachable_days, s.blocked_code
    FROM affected a
    LEFT JOIN number_info i USING (phone)
    LEFT JOIN per p USING (phone)
    LEFT JOIN since s USING (phone)
    LEFT JOIN codes k USING (phone)
    LEFT JOIN consent c USING (phone)
)
SELECT phone, country, carrier, carrier_source, line_type, sends, deliveries, failures,
       consecutive_failures, last_error, first_failure_at, last_failure_at, last_delivered_at,
       opted_out, opted_out_at, suppressed, error_codes,
       CASE WHEN opted_out THEN 'opted_out'
            WHEN permanent_code IS NOT NULL THEN 'remove'
            WHEN unreachable_failures >= $unreachable_min_failures
                 AND unreachable_days >= $unreachable_min_days THEN 'unreachable'
            WHEN blocked_code IS NOT NULL THEN 'blocked'
            ELSE 'ok' END AS verdict,
       CASE WHEN opted_out AND keyword IS NOT NULL
                THEN 'opted out: replied ' || keyword
            WHEN opted_out THEN 'opted out: Twilio error 21610 (recipient unsubscribed)'
            WHEN permanent_code IS NOT NULL
                THEN permanent_code || ' ' || coalesce(e.meaning, 'permanent failure') || ' on '
                     || permanent_failures || ' send(s) with no delivery since'
            WHEN unreachable_failures >= $unreachable_min_failures
                 AND unreachable_days >= $unreachable_min_days
                THEN 'unreachable: 30003 on ' || unreachable_failures || ' sends over '
                     || unreachable_days || ' days with no delivery in between'
            WHEN blocked_code IS NOT NULL
                THEN blocked_code || ' ' || coalesce(b.meaning, 'blocked')
            ELSE '' END AS reason,
       CASE WHEN opted_out THEN 'do not text until they reply START'
            WHEN permanent_code IS NOT NULL THEN 'remove from your list'
            WHEN unreachable_failures >= $unreachable_min_failures
                 AND unreachable_days >= $unreachable_min_days
                THEN 'pause sending; confirm the number with the customer'
            WHEN blocked_code IS NOT NULL THEN 'stop sending; check consent and content'
            ELSE '' END AS action
FROM judged
LEFT JOIN error_codes e ON e.code = permanent_code
LEFT JOIN error_codes b ON b.code = blocked_code;

DELETE FROM numbers WHERE phone IN (SELECT phone FROM affected);
INSERT INTO numbers BY NAME SELECT * FROM fresh_numbers;
