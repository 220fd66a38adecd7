-- What the dashboard's Alerts page reads from the model (analytics/alert_views.py).

-- name: alert_events
-- The alert transitions in the timeline, oldest first; `detail` holds the event's payload.
SELECT type, received_at, detail
FROM events
WHERE type IN ('alert.opened', 'alert.resolved')
ORDER BY position;

-- name: segment_series
-- One segment's delivery rate and OTP median per 5-minute bucket of send time, from $since to
-- $until (epoch seconds); a NULL carrier, country or sender means all of them.
SELECT time_bucket(INTERVAL 5 MINUTE, m.sent_or_seen_at) AS bucket,
       count(*) FILTER (WHERE m.status IN ('delivered', 'read', 'undelivered', 'failed'))
           AS final,
       count(*) FILTER (WHERE m.status IN ('delivered', 'read')) AS delivered,
       quantile_cont((epoch_us(m.delivered_at) - epoch_us(m.sent_at)) / 1e6, 0.5)
           FILTER (WHERE m.category = 'otp') AS otp_p50_s
FROM messages m
WHERE m.sent_or_seen_at >= to_timestamp($since)
  AND m.sent_or_seen_at < to_timestamp($until)
  AND ($carrier::VARCHAR IS NULL OR coalesce(m.carrier, 'unknown') = $carrier::VARCHAR)
  AND ($country::VARCHAR IS NULL OR coalesce(m.country, 'unknown') = $country::VARCHAR)
  AND ($sender::VARCHAR IS NULL
       OR coalesce(m.from_number, m.messaging_service_sid, 'unknown') = $sender::VARCHAR)
GROUP BY 1
ORDER BY 1;
