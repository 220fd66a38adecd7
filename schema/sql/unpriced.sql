-- Sends in [$1, $2) with no final price yet, oldest first, one page after the keyset
-- ($3 time, $4 SID): the worker's price fill-in walks them page by page. Served by
-- events_sent_time (0002) for the window and events_message_sid for the NOT EXISTS.
SELECT s.message_sid, s.occurred_at
FROM events AS s
WHERE s.type = 'message.sent' AND s.occurred_at >= $1 AND s.occurred_at < $2
  AND (s.occurred_at, s.message_sid) > ($3::timestamptz, $4::text)
  AND NOT EXISTS (SELECT 1 FROM events AS p
                  WHERE p.message_sid = s.message_sid AND p.type = 'message.priced')
ORDER BY s.occurred_at, s.message_sid
LIMIT $5
