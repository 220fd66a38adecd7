-- The money analyses (analytics/cost.py), one query per `-- name:` header. The price table
-- arrives as parameters ($price_rows: a list of {country, sms, mms, inbound}; the failed-fee
-- rule), so a replaced table (SMSLEDGER_PRICES) needs no rebuild of the model. Optional
-- filters are written `($x IS NULL OR ...)`: no SQL is assembled in Python.

-- name: cost_by
-- Per group ($by: day, sender, category, country, carrier, or anything else for one row
-- `all`): messages, segments, what Twilio charged (final) apart from what is still an
-- estimate, failed-message fees, wasted spend, and the spend on numbers hygiene would remove.
WITH price_table AS (
    SELECT unnest($price_rows, recursive := true)
),
fallback AS (
    SELECT sms AS d_sms, mms AS d_mms FROM price_table WHERE country = 'default'
),
base AS (
    SELECT m.message_sid, m.sent_or_seen_at AS t, m.category, m.status,
           m.error_code, coalesce(m.segments, 1) AS segments,
           coalesce(n.country, i.country, 'unknown') AS country,
           coalesce(n.carrier, i.lookup_carrier, i.carrier_hint, 'unknown') AS carrier,
           coalesce(m.from_number, m.messaging_service_sid, 'unknown') AS sender,
           n.verdict, p.price::DOUBLE AS final_price,
           coalesce(pt.sms, f.d_sms) AS sms_rate, coalesce(pt.mms, f.d_mms) AS mms_rate
    FROM messages m
    LEFT JOIN numbers n ON n.phone = m.to_number
    LEFT JOIN number_info i ON i.phone = m.to_number
    LEFT JOIN prices p ON p.message_sid = m.message_sid
    LEFT JOIN price_table pt ON pt.country = coalesce(n.country, i.country)
    CROSS JOIN fallback f
    WHERE ($since IS NULL OR m.sent_or_seen_at >= $since)
      AND ($until IS NULL OR m.sent_or_seen_at < $until)
      AND ($sender IS NULL OR coalesce(m.from_number, m.messaging_service_sid) = $sender)
      AND ($category IS NULL OR m.category = $category)
      AND ($country IS NULL OR coalesce(n.country, i.country) = $country)
),
estimated AS (
    SELECT *,
           -- A failed message costs the processing fee alone (per message, not per
           -- segment), unless before the fee existed or its code is exempt; a canceled one
           -- nothing; anything else the carrier took is charged per segment, an MMS per
           -- message where MMS is offered.
           CASE WHEN status = 'failed'
                    THEN CASE WHEN t >= $failed_fee_since
                                   AND NOT list_contains($failed_fee_exempt,
                                                         coalesce(error_code, -1))
                              THEN $failed_fee ELSE 0 END
                WHEN status = 'canceled' THEN 0
                WHEN message_sid LIKE 'MM%' AND mms_rate > 0 THEN mms_rate
                ELSE segments * sms_rate END AS estimate
    FROM base
),
costed AS (
    SELECT *, coalesce(final_price, estimate) AS cost,
           status IN ('delivered', 'read') AS delivered
    FROM estimated
)
SELECT CASE $by WHEN 'day' THEN strftime(date_trunc('day', t), '%Y-%m-%d')
                WHEN 'sender' THEN sender
                WHEN 'category' THEN coalesce(category, 'unknown')
                WHEN 'country' THEN country
                WHEN 'carrier' THEN carrier
                ELSE 'all' END AS key,
       count(*) AS messages,
       sum(segments)::BIGINT AS segments,
       count(*) FILTER (WHERE delivered) AS delivered,
       count(*) FILTER (WHERE final_price IS NOT NULL) AS priced,
       coalesce(sum(estimate) FILTER (WHERE final_price IS NULL), 0) AS estimated_usd,
       coalesce(sum(final_price), 0) AS final_usd,
       coalesce(sum(cost), 0) AS total_usd,
       coalesce(sum(cost) FILTER (WHERE status = 'failed'), 0) AS failed_fees_usd,
       coalesce(sum(cost) FILTER (WHERE status IN ('undelivered', 'failed')
                                  OR verdict IN ('remove', 'unreachable')), 0) AS wasted_usd,
       coalesce(sum(cost) FILTER (WHERE verdict IN ('remove', 'unreachable')), 0)
           AS removable_usd,
       count(*) FILTER (WHERE delivered AND category = 'otp') AS otp_delivered,
       coalesce(sum(cost) FILTER (WHERE category = 'otp'), 0) AS otp_usd
FROM costed
GROUP BY 1
ORDER BY CASE WHEN $by = 'day' THEN key END, total_usd DESC, key;

-- name: verify_cost
-- Twilio Verify in the range: verifications started and approved, the fee per approved one,
-- and the SMS each start sent (priced by the number's country).
WITH price_table AS (
    SELECT unnest($price_rows, recursive := true)
),
fallback AS (
    SELECT sms AS d_sms FROM price_table WHERE country = 'default'
),
v AS (
    SELECT detail AS verification_sid, any_value(phone) AS phone,
           bool_or(type = 'verification.started') AS started,
           bool_or(type = 'verification.checked' AND status = 'approved') AS approved
    FROM events
    WHERE type IN ('verification.started', 'verification.checked') AND detail IS NOT NULL
      AND ($since IS NULL OR occurred_at >= $since)
      AND ($until IS NULL OR occurred_at < $until)
    GROUP BY detail
)
SELECT count(*) FILTER (WHERE started) AS started,
       count(*) FILTER (WHERE approved) AS approved,
       coalesce(sum(coalesce(pt.sms, f.d_sms)) FILTER (WHERE started), 0) AS channel_usd,
       count(*) FILTER (WHERE approved) * $verify_fee AS verify_fees_usd
FROM v
LEFT JOIN number_info i ON i.phone = v.phone
LEFT JOIN price_table pt ON pt.country = i.country
CROSS JOIN fallback f;

