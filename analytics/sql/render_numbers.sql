-- Each touched number's row in `numbers` and its hygiene verdict, from its running figures
-- (`affected_state`: their rows of number_state, kept by number_state.sql), the contact facts
-- and what is known of the number (`affected_dims`: number_dims() of each, from the rollup's
-- map of every number, analytics/rollup.py; reading number_info here would read every
-- number's row each tick).
-- The rules are parameters (the codes and thresholds of analytics/hygiene_rules.toml):
-- configuration, versioned with the report.
-- "After the last delivery" is what makes failures consecutive.
CREATE OR REPLACE TEMP TABLE fresh_numbers AS
WITH consent AS (
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
judged AS (
    SELECT a.phone, i.country, i.carrier, i.carrier_source, i.line_type,
           coalesce(s.sends, 0) AS sends, coalesce(s.deliveries, 0) AS deliveries,
           coalesce(s.failures, 0) AS failures,
           coalesce(s.consecutive_failures, 0) AS consecutive_failures,
           s.last_error, s.first_failure_at, s.last_failure_at, s.last_delivered_at,
           coalesce(c.opted_out, false)
               OR s.opt_out_code_at > coalesce(c.opted_in_at, '-infinity'::TIMESTAMPTZ)
               AS opted_out,
           c.opted_out_at, coalesce(c.suppressed, false) AS suppressed, s.error_codes,
           c.keyword, s.permanent_code, s.permanent_failures, s.unreachable_failures,
           len(s.unreachable_days) AS unreachable_days, s.blocked_code
    FROM affected a
    LEFT JOIN affected_dims i USING (phone)
    LEFT JOIN affected_state s USING (phone)
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
