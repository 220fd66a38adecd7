-- The status groups, defined once for the writer (schema/duckdb/writer_macros.sql's company)
-- and the readers (schema/duckdb/macros.sql): TEMP macros, per connection.

-- A final status that reached the handset / that did not. Some segments of a
-- partially_delivered message arrived: the handset exists and receives, so it counts as
-- delivered. canceled (withdrawn before sending) is neither: it is not in the delivery rate,
-- whose denominator is the messages with an outcome.
CREATE OR REPLACE TEMP MACRO is_delivered(status) AS
    status IN ('delivered', 'read', 'partially_delivered');
CREATE OR REPLACE TEMP MACRO is_failed(status) AS status IN ('undelivered', 'failed');
