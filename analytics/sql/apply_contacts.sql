-- The contact facts alone (opt-outs, opt-ins, suppressions), for the numbers' consent.
INSERT INTO contact_events
SELECT position, type, phone, occurred_at, detail FROM batch WHERE type LIKE 'contact.%'
