-- The alert detectors' queries (analytics/detectors.py), one per `-- name:` header. Each filters
-- by send time first (sent_or_seen_at: the send time, else the first event; late callbacks and
-- backfilled history land in the window they were sent in), so that it costs what its window
-- costs (files outside it are skipped by their min/max). Parameters:
-- $since, $until (epoch seconds: the span read), $ends (window ends, epoch seconds), $window_s.
-- Segments: carrier and country of the number (carried on `messages`), sender = the From
-- number or the messaging service; unknown ones as 'unknown'. NULL in a grouping column means "all".

-- name: delivery_window
WITH facts AS (
    SELECT m.sent_or_seen_at AS t,
           coalesce(m.carrier, 'unknown') AS carrier, coalesce(m.country, 'unknown') AS country,
           coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender,
           m.status IN ('delivered', 'read') AS ok
    FROM messages m
    WHERE m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
      AND m.status IN ('delivered', 'read', 'undelivered', 'failed')
), ends AS (SELECT to_timestamp(unnest($ends::DOUBLE[])) AS window_end)
SELECT epoch(e.window_end) AS window_end, carrier, country, sender,
       count(*) AS sample, count(*) FILTER (WHERE ok) AS good
FROM facts f JOIN ends e
  ON f.t >= e.window_end - to_seconds($window_s) AND f.t < e.window_end
GROUP BY GROUPING SETS ((e.window_end, carrier, country, sender), (e.window_end, carrier),
                        (e.window_end, country), (e.window_end, sender));

-- name: delivery_baseline
WITH facts AS (
    SELECT coalesce(m.carrier, 'unknown') AS carrier, coalesce(m.country, 'unknown') AS country,
           coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender,
           m.status IN ('delivered', 'read') AS ok
    FROM messages m
    WHERE m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
      AND m.status IN ('delivered', 'read', 'undelivered', 'failed')
)
SELECT carrier, country, sender, count(*) AS sample, count(*) FILTER (WHERE ok) AS good
FROM facts
GROUP BY GROUPING SETS ((carrier, country, sender), (carrier), (country), (sender));

-- name: error_window
WITH facts AS (
    SELECT m.sent_or_seen_at AS t,
           coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender, m.error_code
    FROM messages m
    WHERE m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
      AND m.status IN ('delivered', 'read', 'undelivered', 'failed')
), ends AS (SELECT to_timestamp(unnest($ends::DOUBLE[])) AS window_end),
per_window AS (
    SELECT e.window_end, f.sender, f.error_code
    FROM facts f JOIN ends e
      ON f.t >= e.window_end - to_seconds($window_s) AND f.t < e.window_end
), totals AS (
    SELECT window_end, sender, count(*) AS sample FROM per_window GROUP BY ALL
)
SELECT epoch(p.window_end) AS window_end, p.sender, p.error_code, count(*) AS hits,
       any_value(t.sample) AS sample, any_value(c.meaning) AS meaning
FROM per_window p
JOIN totals t ON t.window_end = p.window_end AND t.sender = p.sender
LEFT JOIN error_codes c ON c.code = p.error_code
WHERE p.error_code IS NOT NULL
GROUP BY p.window_end, p.sender, p.error_code;

-- name: error_baseline
SELECT coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender, m.error_code,
       count(*) AS hits, sum(count(*)) OVER (PARTITION BY sender) AS sample
FROM messages m
WHERE m.sent_or_seen_at >= to_timestamp($since)
  AND m.sent_or_seen_at < to_timestamp($until)
  AND m.status IN ('delivered', 'read', 'undelivered', 'failed')
GROUP BY 1, 2;

-- name: otp_latency_window
WITH facts AS (
    SELECT m.sent_or_seen_at AS t,
           coalesce(m.carrier, 'unknown') AS carrier, coalesce(m.country, 'unknown') AS country,
           (epoch_us(m.delivered_at) - epoch_us(m.sent_at)) / 1e6 AS latency_s
    FROM messages m
    WHERE m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
      AND m.category = 'otp' AND m.delivered_at IS NOT NULL AND m.sent_at IS NOT NULL
), ends AS (SELECT to_timestamp(unnest($ends::DOUBLE[])) AS window_end)
SELECT epoch(e.window_end) AS window_end, carrier, country, count(*) AS sample,
       quantile_cont(latency_s, 0.5) AS p50, quantile_cont(latency_s, 0.9) AS p90
FROM facts f JOIN ends e
  ON f.t >= e.window_end - to_seconds($window_s) AND f.t < e.window_end
GROUP BY GROUPING SETS ((e.window_end, carrier), (e.window_end, country));

-- name: otp_latency_baseline
SELECT coalesce(m.carrier, 'unknown') AS carrier, coalesce(m.country, 'unknown') AS country,
       count(*) AS sample, quantile_cont((epoch_us(m.delivered_at) - epoch_us(m.sent_at)) / 1e6, 0.5) AS p50
FROM messages m
WHERE m.sent_or_seen_at >= to_timestamp($since)
  AND m.sent_or_seen_at < to_timestamp($until)
  AND m.category = 'otp' AND m.delivered_at IS NOT NULL AND m.sent_at IS NOT NULL
GROUP BY GROUPING SETS ((carrier), (country));

-- name: opt_out_window
-- Each opt-out is charged to the sender of the last message sent to that number in the three
-- days before it; the rate is opt-outs over the sender's sends in the same window.
WITH ends AS (SELECT to_timestamp(unnest($ends::DOUBLE[])) AS window_end),
outs AS (
    SELECT phone, occurred_at FROM contact_events
    WHERE type = 'contact.opted_out'
      AND occurred_at >= to_timestamp($since) AND occurred_at < to_timestamp($until)
), charged AS (
    SELECT o.phone, o.occurred_at,
           arg_max(coalesce(m.from_number, m.messaging_service_sid, 'unknown'),
                   m.sent_or_seen_at) AS sender
    FROM outs o JOIN messages m
      ON m.to_number = o.phone
     AND m.sent_or_seen_at <= o.occurred_at
     AND m.sent_or_seen_at >= o.occurred_at - INTERVAL 3 DAY
    WHERE m.sent_or_seen_at >= to_timestamp($since) - INTERVAL 3 DAY
      AND m.sent_or_seen_at < to_timestamp($until)
    GROUP BY o.phone, o.occurred_at
), out_counts AS (
    SELECT e.window_end, c.sender, count(*) AS opt_outs
    FROM charged c JOIN ends e
      ON c.occurred_at >= e.window_end - to_seconds($window_s) AND c.occurred_at < e.window_end
    GROUP BY ALL
), sends AS (
    SELECT e.window_end, coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender,
           count(*) AS sample
    FROM messages m JOIN ends e
      ON m.sent_or_seen_at >= e.window_end - to_seconds($window_s)
     AND m.sent_or_seen_at < e.window_end
    WHERE m.sent_or_seen_at >= to_timestamp($since)
      AND m.sent_or_seen_at < to_timestamp($until)
    GROUP BY ALL
)
SELECT epoch(o.window_end) AS window_end, o.sender, o.opt_outs,
       greatest(coalesce(s.sample, 0), o.opt_outs) AS sample
FROM out_counts o LEFT JOIN sends s ON s.window_end = o.window_end AND s.sender = o.sender;

-- name: opt_out_baseline
WITH outs AS (
    SELECT phone, occurred_at FROM contact_events
    WHERE type = 'contact.opted_out'
      AND occurred_at >= to_timestamp($since) AND occurred_at < to_timestamp($until)
), charged AS (
    SELECT arg_max(coalesce(m.from_number, m.messaging_service_sid, 'unknown'),
                   m.sent_or_seen_at) AS sender
    FROM outs o JOIN messages m
      ON m.to_number = o.phone
     AND m.sent_or_seen_at <= o.occurred_at
     AND m.sent_or_seen_at >= o.occurred_at - INTERVAL 3 DAY
    WHERE m.sent_or_seen_at >= to_timestamp($since) - INTERVAL 3 DAY
      AND m.sent_or_seen_at < to_timestamp($until)
    GROUP BY o.phone, o.occurred_at
), sends AS (
    SELECT coalesce(from_number, messaging_service_sid, 'unknown') AS sender, count(*) AS sample
    FROM messages
    WHERE sent_or_seen_at >= to_timestamp($since)
      AND sent_or_seen_at < to_timestamp($until)
    GROUP BY ALL
)
SELECT s.sender, s.sample, (SELECT count(*) FROM charged c WHERE c.sender = s.sender) AS opt_outs
FROM sends s;

-- name: callback_silence
-- Sends at least $grace_s old in the window, and how many of them never had any status
-- callback (no first sent/delivered/failed time and no status beyond the send's own).
WITH ends AS (SELECT to_timestamp(unnest($ends::DOUBLE[])) AS window_end)
SELECT epoch(e.window_end) AS window_end,
       coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender,
       count(*) AS sample,
       count(*) FILTER (WHERE m.first_sent_at IS NULL AND m.delivered_at IS NULL
                        AND m.failed_at IS NULL AND m.read_at IS NULL
                        AND coalesce(m.status, 'queued') IN ('queued', 'accepted', 'sending',
                                                            'scheduled')) AS silent
FROM messages m JOIN ends e
  ON m.sent_at >= e.window_end - to_seconds($window_s)
 AND m.sent_at < e.window_end - to_seconds($grace_s)
WHERE m.sent_at >= to_timestamp($since) AND m.sent_at < to_timestamp($until)
  AND m.send_source IN ('api', 'webhook')
GROUP BY ALL;

-- name: gauges
-- The worker's Prometheus gauges: per carrier and per country, over the messages sent in
-- [$since, $until): messages, delivery rate over final statuses, OTP median latency.
SELECT CASE WHEN grouping(m.carrier) = 0 THEN 'carrier' ELSE 'country' END AS dimension,
       coalesce(CASE WHEN grouping(m.carrier) = 0 THEN m.carrier ELSE m.country END,
                'unknown') AS name,
       count(*) AS messages,
       count(*) FILTER (WHERE m.status IN ('delivered', 'read')) AS delivered,
       count(*) FILTER (WHERE m.status IN ('delivered', 'read', 'undelivered', 'failed'))
           AS final,
       quantile_cont((epoch_us(m.delivered_at) - epoch_us(m.sent_at)) / 1e6, 0.5)
           FILTER (WHERE m.category = 'otp') AS otp_p50_s
FROM messages m
WHERE m.sent_or_seen_at >= to_timestamp($since)
  AND m.sent_or_seen_at < to_timestamp($until)
GROUP BY GROUPING SETS ((m.carrier), (m.country));
