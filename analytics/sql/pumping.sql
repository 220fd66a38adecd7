-- The pumping detector's queries (analytics/pumping.py), one per `-- name:` header. What an
-- SMS pumping attack buys is OTP traffic: OTP messages (category otp) and Verify starts, to
-- numbers in a block the attacker controls. A number's prefix is its E.164 form without the
-- last 4 digits (a block of 10,000 numbers). Times are epoch seconds, as in detectors.sql.
-- Approvals: Verify checks that came back approved, and OTP confirmations (otp.confirmed).

-- name: pumping_window
WITH sends AS (
    SELECT m.sent_or_seen_at AS t, m.to_number AS phone,
           m.message_sid AS ref, false AS verify
    FROM messages m
    WHERE m.category = 'otp'
      AND m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
    UNION ALL
    SELECT occurred_at, phone, detail, true
    FROM events
    WHERE type = 'verification.started'
      AND occurred_at >= to_timestamp($since) AND occurred_at < to_timestamp($until)
),
approvals AS (
    SELECT DISTINCT detail AS ref FROM events
    WHERE type = 'verification.checked' AND status = 'approved'
      AND occurred_at >= to_timestamp($since)
    UNION
    SELECT DISTINCT message_sid FROM events
    WHERE type = 'otp.confirmed' AND occurred_at >= to_timestamp($since)
),
codes AS (
    SELECT m.sent_or_seen_at AS t, m.to_number AS phone, m.error_code AS code
    FROM messages m
    WHERE list_contains($codes, m.error_code)
      AND m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
    UNION ALL
    SELECT occurred_at, phone, error_code FROM events
    WHERE type = 'message.send_failed' AND list_contains($codes, error_code)
      AND occurred_at >= to_timestamp($since) AND occurred_at < to_timestamp($until)
),
ends AS (SELECT to_timestamp(unnest($ends::DOUBLE[])) AS window_end),
win AS (
    SELECT e.window_end, s.phone, s.ref, s.verify, left(s.phone, length(s.phone) - 4) AS prefix
    FROM sends s JOIN ends e
      ON s.t >= e.window_end - to_seconds($window_s) AND s.t < e.window_end
    WHERE s.phone LIKE '+%' AND length(s.phone) >= 9
),
-- The longest run of consecutive numbers per window and prefix (gaps and islands: within a
-- run, number minus rank is constant).
numbered AS (
    SELECT DISTINCT window_end, prefix, TRY_CAST(right(phone, 4) AS BIGINT) AS num FROM win
),
islands AS (
    SELECT window_end, prefix, min(num) AS first_num, count(*) AS n
    FROM (SELECT *, num - row_number() OVER (PARTITION BY window_end, prefix ORDER BY num)
                        AS island
          FROM numbered WHERE num IS NOT NULL)
    GROUP BY window_end, prefix, island
),
runs AS (
    SELECT window_end, prefix, max(n) AS longest_run, arg_max(first_num, n) AS run_start
    FROM islands GROUP BY ALL
),
code_hits AS (
    SELECT e.window_end, left(c.phone, length(c.phone) - 4) AS prefix, count(*) AS code_hits,
           string_agg(DISTINCT c.code::VARCHAR, ',' ORDER BY c.code::VARCHAR) AS codes_seen
    FROM codes c JOIN ends e
      ON c.t >= e.window_end - to_seconds($window_s) AND c.t < e.window_end
    WHERE c.phone LIKE '+%' AND length(c.phone) >= 9
    GROUP BY ALL
)
SELECT epoch(w.window_end) AS window_end, w.prefix,
       coalesce(any_value(i.country), 'unknown') AS country,
       count(*) AS sends,
       count(*) FILTER (WHERE w.verify) AS verifications,
       count(*) FILTER (WHERE w.verify AND a.ref IS NOT NULL) AS verify_approvals,
       count(*) FILTER (WHERE NOT w.verify) AS otp_messages,
       count(*) FILTER (WHERE NOT w.verify AND a.ref IS NOT NULL) AS otp_confirmed,
       count(DISTINCT w.phone) AS numbers,
       coalesce(any_value(r.longest_run), 0) AS longest_run,
       any_value(r.run_start) AS run_start,
       coalesce(any_value(c.code_hits), 0) AS code_hits,
       any_value(c.codes_seen) AS codes_seen
FROM win w
LEFT JOIN approvals a ON a.ref = w.ref
LEFT JOIN number_info i ON i.phone = w.phone
LEFT JOIN runs r ON r.window_end = w.window_end AND r.prefix = w.prefix
LEFT JOIN code_hits c ON c.window_end = w.window_end AND c.prefix = w.prefix
GROUP BY w.window_end, w.prefix;

-- name: pumping_first_seen
-- When each of $prefixes was first texted (any message, any Verify start) since $since.
SELECT prefix, min(t) AS first_seen
FROM (
    SELECT left(to_number, length(to_number) - 4) AS prefix,
           epoch(sent_or_seen_at) AS t
    FROM messages
    WHERE sent_or_seen_at >= to_timestamp($since)
      AND to_number LIKE '+%' AND length(to_number) >= 9
    UNION ALL
    SELECT left(phone, length(phone) - 4), epoch(occurred_at)
    FROM events
    WHERE type = 'verification.started' AND occurred_at >= to_timestamp($since)
      AND phone LIKE '+%' AND length(phone) >= 9
)
WHERE list_contains($prefixes, prefix)
GROUP BY prefix;

-- name: pumping_baseline
-- Per country over [$since, $until), and over all countries (the row whose country is NULL):
-- Verify starts and approvals, OTP messages and confirmations, apart (an account that never
-- confirms its OTP messages still has a Verify conversion).
WITH sends AS (
    SELECT m.to_number AS phone, m.message_sid AS ref, false AS verify
    FROM messages m
    WHERE m.category = 'otp'
      AND m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
    UNION ALL
    SELECT phone, detail, true FROM events
    WHERE type = 'verification.started'
      AND occurred_at >= to_timestamp($since) AND occurred_at < to_timestamp($until)
),
approvals AS (
    SELECT DISTINCT detail AS ref FROM events
    WHERE type = 'verification.checked' AND status = 'approved'
      AND occurred_at >= to_timestamp($since)
    UNION
    SELECT DISTINCT message_sid FROM events
    WHERE type = 'otp.confirmed' AND occurred_at >= to_timestamp($since)
)
SELECT coalesce(i.country, 'unknown') AS country,
       count(*) FILTER (WHERE s.verify) AS verifications,
       count(a.ref) FILTER (WHERE s.verify) AS verify_approvals,
       count(*) FILTER (WHERE NOT s.verify) AS otp_messages,
       count(a.ref) FILTER (WHERE NOT s.verify) AS otp_confirmed
FROM sends s
LEFT JOIN approvals a ON a.ref = s.ref
LEFT JOIN number_info i ON i.phone = s.phone
GROUP BY ROLLUP (coalesce(i.country, 'unknown'));

-- name: conversion_by_prefix
-- The dashboard's Fraud section: per country and prefix in [$since, $until), OTP messages and
-- Verify starts against approvals, largest first.
WITH sends AS (
    SELECT m.to_number AS phone, m.message_sid AS ref, false AS verify
    FROM messages m
    WHERE m.category = 'otp'
      AND ($since IS NULL OR m.sent_or_seen_at >= $since)
      AND ($until IS NULL OR m.sent_or_seen_at < $until)
    UNION ALL
    SELECT phone, detail, true FROM events
    WHERE type = 'verification.started'
      AND ($since IS NULL OR occurred_at >= $since) AND ($until IS NULL OR occurred_at < $until)
),
approvals AS (
    SELECT DISTINCT detail AS ref FROM events
    WHERE type = 'verification.checked' AND status = 'approved'
    UNION
    SELECT DISTINCT message_sid FROM events WHERE type = 'otp.confirmed'
)
SELECT coalesce(i.country, 'unknown') AS country, left(s.phone, length(s.phone) - 4) AS prefix,
       count(*) FILTER (WHERE NOT s.verify) AS otp_messages,
       count(*) FILTER (WHERE s.verify) AS verifications,
       count(a.ref) AS approvals,
       count(a.ref) FILTER (WHERE s.verify) / nullif(count(*) FILTER (WHERE s.verify), 0)
           AS verify_conversion,
       count(DISTINCT s.phone) AS numbers
FROM sends s
LEFT JOIN approvals a ON a.ref = s.ref
LEFT JOIN number_info i ON i.phone = s.phone
WHERE s.phone LIKE '+%' AND length(s.phone) >= 9
GROUP BY ALL
ORDER BY otp_messages + verifications DESC, prefix
LIMIT $limit;

-- name: blocked_sends
-- Sends the fraud guard refused (message.refused with reason pumping), per day and prefix.
SELECT date_trunc('day', occurred_at) AS day, left(phone, length(phone) - 4) AS prefix,
       count(*) AS blocked
FROM events
WHERE type = 'message.refused' AND detail = 'pumping'
  AND ($since IS NULL OR occurred_at >= $since) AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY 1 DESC, 3 DESC
