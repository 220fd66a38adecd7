-- Which alerts are open, and which transitions still wait for their notification, is derived
-- from the alert events alone (schema/sql/alert_log.sql), on every worker tick. They are a
-- handful among millions of callbacks: a partial index makes that read cost the alerts, not
-- the log, and costs the ingest path nothing (no callback is ever indexed here).
-- (Numbered 0016 after the issue that added it, so that parallel work cannot collide.)
CREATE INDEX events_alerts ON events (position) WHERE type LIKE 'alert.%';
