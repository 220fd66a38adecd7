-- Reconciliation looks for sends without a terminal status in a time window; without this
-- it would scan the whole log every few minutes.
CREATE INDEX events_sent_time ON events (occurred_at) WHERE type = 'message.sent';
