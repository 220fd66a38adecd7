-- The analyses the dashboard, the reports and the worker read from the DuckDB model
-- (analytics/queries.py, report.py, enrich.py), by name. Filters are bound: $start, $end,
-- $sender, $category, $country (NULL: no filter), through the facts_in / facts_by macros of
-- schema/duckdb/macros.sql, which also define is_delivered, is_failed and verdict_rank.

-- name: overview
-- The headline figures and the status funnel's stages (analytics.queries.status_funnel).
SELECT count(*), count(*) FILTER (WHERE is_delivered(status)),
       count(*) FILTER (WHERE is_failed(status)),
       median(latency_s) FILTER (WHERE category = 'otp'),
       sum(segments) FILTER (WHERE status IS DISTINCT FROM 'canceled'),
       count(*) FILTER (WHERE status = 'canceled'),
       count(*) FILTER (WHERE first_sent_at IS NOT NULL OR delivered_at IS NOT NULL
                              OR failed_at IS NOT NULL)
FROM facts_in($start, $end, $sender, $category, $country);

-- name: delivery_by
-- $dim names a column of facts_by; time dimensions in time order, the others by volume.
SELECT COLUMNS(lambda c: c = $dim), count(*) AS messages,
       count(*) FILTER (WHERE is_delivered(status)) AS delivered,
       count(*) FILTER (WHERE is_failed(status)) AS failed,
       delivered / nullif(delivered + failed, 0) AS delivery_rate,
       median(latency_s) AS median_latency_s
FROM facts_by($start, $end, $sender, $category, $country)
GROUP BY ALL
ORDER BY CASE WHEN $dim IN ('day', 'hourly', 'hour') THEN 0 ELSE messages END DESC, 1;

-- name: error_breakdown
SELECT error_code, any_value(error_meaning) AS meaning,
       coalesce(any_value(error_class), 'unclassified') AS class,
       count(*) AS messages,
       count(*) / sum(count(*)) OVER () AS share,
       string_agg(DISTINCT coalesce(carrier, 'unknown'), ', ') AS carriers,
       string_agg(DISTINCT coalesce(country, 'unknown'), ', ') AS countries
FROM facts_in($start, $end, $sender, $category, $country)
WHERE error_code IS NOT NULL
GROUP BY error_code ORDER BY messages DESC;

-- name: error_trend
-- $unit: 'day' or 'hour'.
SELECT date_trunc($unit, coalesce(failed_at, first_seen_at)) AS period,
       error_code::VARCHAR AS error_code, count(*) AS messages
FROM facts_in($start, $end, $sender, $category, $country)
WHERE error_code IS NOT NULL
GROUP BY ALL ORDER BY 1, 2;

-- name: otp_latency
-- $dim names a column of facts_by ('scope': all OTPs in one row); hours and days in time
-- order, the others slowest first.
SELECT COLUMNS(lambda c: c = $dim), count(*) AS delivered,
       quantile_cont(latency_s, 0.5) AS p50_s, quantile_cont(latency_s, 0.9) AS p90_s,
       quantile_cont(latency_s, 0.99) AS p99_s
FROM facts_by($start, $end, $sender, $category, $country)
WHERE category = 'otp' AND latency_s IS NOT NULL
GROUP BY ALL
ORDER BY CASE WHEN $dim IN ('hour', 'day') THEN 0 ELSE p50_s END DESC, 1;

-- name: otp_latency_sets
-- What the OTP page shows, in one pass: otp_latency for all OTPs, by carrier, by country and
-- by hour of day (grouping sets: four separate queries read the messages four times). `dim`
-- names the grouping; `key` its value ('all' for the whole), hours in time order, the others
-- slowest first.
-- (One quantile_cont with a list of three: a third faster than three of them.)
SELECT dim, key, delivered, q[1] AS p50_s, q[2] AS p90_s, q[3] AS p99_s
FROM (
    SELECT CASE grouping(carrier, country, "hour")
               WHEN 7 THEN 'scope' WHEN 3 THEN 'carrier' WHEN 5 THEN 'country' ELSE 'hour'
           END AS dim,
           coalesce(carrier, country, "hour"::VARCHAR, 'all') AS key, "hour",
           count(*) AS delivered, quantile_cont(latency_s, [0.5, 0.9, 0.99]) AS q
    FROM facts_by($start, $end, $sender, $category, $country)
    WHERE category = 'otp' AND latency_s IS NOT NULL
    GROUP BY GROUPING SETS ((), (carrier), (country), ("hour"))
    HAVING count(*) > 0)        -- no OTPs: no row for the whole either
ORDER BY dim, CASE WHEN dim = 'hour' THEN 0 ELSE p50_s END DESC, "hour", key;

-- name: otp_latencies
SELECT latency_s, carrier, country
FROM facts_in($start, $end, $sender, $category, $country)
WHERE category = 'otp' AND latency_s IS NOT NULL
ORDER BY sent_at DESC LIMIT $limit;

-- name: verify_conversion
-- Events, not messages: only the date range applies.
SELECT date_trunc('day', occurred_at) AS day,
       count(DISTINCT detail) FILTER (WHERE type = 'verification.started') AS started,
       count(DISTINCT detail) FILTER (WHERE type = 'verification.checked'
                                      AND status = 'approved') AS approved,
       approved / nullif(started, 0) AS conversion
FROM events
WHERE ($start IS NULL OR occurred_at >= $start) AND ($end IS NULL OR occurred_at < $end)
  AND type LIKE 'verification.%'
GROUP BY 1 ORDER BY 1;

-- name: otp_conversion
-- Per day of sending: OTP messages, those confirmed (otp.confirmed), the share confirmed.
SELECT utc_floor(sent_or_seen_at, 86400000000) AS day, count(*) AS sent,
       count(*) FILTER (WHERE message_sid IN (
           SELECT message_sid FROM events WHERE type = 'otp.confirmed')) AS confirmed,
       confirmed / nullif(sent, 0) AS conversion
FROM facts_in($start, $end, $sender, $category, $country)
WHERE category = 'otp'
GROUP BY 1 ORDER BY 1;

-- name: opt_outs
SELECT date_trunc('day', occurred_at) AS day,
       replace(type, 'contact.', '') AS kind, coalesce(detail, '') AS keyword,
       count(*) AS events
FROM events
WHERE ($start IS NULL OR occurred_at >= $start) AND ($end IS NULL OR occurred_at < $end)
  AND type IN ('contact.opted_out', 'contact.opted_in', 'contact.help_requested')
GROUP BY ALL ORDER BY 1, 2, 4 DESC;

-- name: flagged_numbers
-- $verdicts: a list of verdicts, or NULL for every verdict but ok; $limit: NULL for all.
SELECT phone, verdict, reason, error_codes, sends, deliveries, failures,
       consecutive_failures, first_failure_at, last_failure_at, last_delivered_at,
       country, carrier, line_type, action
FROM numbers
WHERE verdict <> 'ok'
  AND ($verdicts IS NULL OR list_contains($verdicts, verdict))
  AND ($country IS NULL OR country = $country)
ORDER BY verdict_rank(verdict), last_failure_at DESC NULLS LAST, phone
LIMIT $limit;

-- name: flagged_counts
SELECT verdict, count(*) AS numbers FROM numbers
WHERE verdict <> 'ok' AND ($country IS NULL OR country = $country)
GROUP BY verdict ORDER BY verdict;

-- name: hygiene_flagged
SELECT phone, verdict, reason, error_codes, sends, deliveries, failures,
       consecutive_failures, first_failure_at, last_failure_at, last_delivered_at, country,
       carrier, line_type, action AS recommended_action, suppressed
FROM numbers WHERE verdict <> 'ok'
ORDER BY verdict_rank(verdict), last_failure_at DESC NULLS LAST, phone;

-- name: refused_sends
SELECT CASE WHEN type = 'message.refused' THEN 'smsledger' ELSE 'Twilio' END AS by,
       CASE WHEN type = 'message.refused' THEN coalesce(detail, 'refused')
            ELSE coalesce(error_code::VARCHAR, 'refused') END AS reason,
       count(*) AS sends
FROM events
WHERE type IN ('message.refused', 'message.send_failed')
  AND ($start::TIMESTAMPTZ IS NULL OR occurred_at >= $start)
  AND ($end::TIMESTAMPTZ IS NULL OR occurred_at < $end)
GROUP BY ALL ORDER BY sends DESC;

-- name: alert_marks
SELECT occurred_at AS at,
       CASE type WHEN 'alert.opened' THEN 'alert opened' ELSE 'alert resolved' END AS what
FROM events
WHERE type IN ('alert.opened', 'alert.resolved')
  AND ($start::TIMESTAMPTZ IS NULL OR occurred_at >= $start)
  AND ($end::TIMESTAMPTZ IS NULL OR occurred_at < $end)
ORDER BY occurred_at;

-- name: timeline
-- $key: a message SID, or a phone number when $by_phone.
SELECT occurred_at, received_at, type, status, error_code, source, message_sid, phone,
       category, detail, position
FROM events WHERE message_sid = $key OR ($by_phone AND phone = $key) ORDER BY position;

-- name: find_numbers
SELECT phone, country, carrier, sends, verdict FROM numbers
WHERE suffix(phone, $digits) ORDER BY sends DESC, phone LIMIT $limit;

-- name: find_messages
-- The newest messages matching a SID prefix, an error code, a carrier, a country or a sender
-- (each NULL: any).
SELECT message_sid, to_number AS phone, status, error_code, carrier, country,
       sent_or_seen_at AS sent_at
FROM message_facts
WHERE ($sid_prefix IS NULL OR starts_with(message_sid, $sid_prefix))
  AND ($code IS NULL OR error_code = $code)
  AND ($carrier IS NULL OR coalesce(carrier, 'unknown') = $carrier)
  AND ($country IS NULL OR coalesce(country, 'unknown') = $country)
  AND ($sender IS NULL OR coalesce(from_number, messaging_service_sid) = $sender)
ORDER BY sent_or_seen_at DESC LIMIT $limit;

-- name: data_as_of
SELECT updated_at FROM rollup_cursor WHERE id = 1;

-- name: filter_choices
-- The senders, categories and countries of the messages (one pass; countries are carried on
-- `messages`: the numbers run to millions).
SELECT list(DISTINCT coalesce(from_number, messaging_service_sid)
            ORDER BY coalesce(from_number, messaging_service_sid)),
       list(DISTINCT category ORDER BY category), list(DISTINCT country ORDER BY country)
FROM messages;

-- name: numbers_to_look_up
SELECT phone FROM number_info WHERE looked_up_at IS NULL AND phone LIKE '+%'
ORDER BY phone LIMIT $limit;
