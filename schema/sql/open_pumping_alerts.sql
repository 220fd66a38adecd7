-- Open `pumping` alerts (analytics/pumping.py): each alert.opened of the rule whose alert id
-- has no alert.resolved yet. The ingester's fraud guard reads it (cached for a moment). The
-- LIKE repeats the partial index events_alerts' predicate (migration 0016), so the index
-- serves both lookups: the alerts are a handful among millions of events.
SELECT o.payload->>'alert_id' AS alert_id,
       o.payload->'segment'->>'country' AS country,
       o.payload->'segment'->>'prefix' AS prefix,
       o.payload->>'text' AS text,
       o.payload->'evidence'->'signals' AS signals,
       o.received_at AS opened_at
FROM events AS o
WHERE o.type LIKE 'alert.%' AND o.type = 'alert.opened' AND o.payload->>'rule' = 'pumping'
  AND NOT EXISTS (SELECT 1 FROM events AS r
                  WHERE r.type LIKE 'alert.%' AND r.type = 'alert.resolved'
                    AND r.payload->>'alert_id' = o.payload->>'alert_id')
ORDER BY o.position
