-- What /v1/otp/confirm needs to know of one message: its send (to whom, which category) and
-- whether it was already confirmed. Served by events_message_sid.
SELECT type, phone, payload->>'category' AS category
FROM events
WHERE message_sid = $1 AND type IN ('message.sent', 'otp.confirmed')
ORDER BY position
