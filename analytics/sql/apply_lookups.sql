-- Lookup v2 answers (number.looked_up events): the latest one per number wins.
UPDATE number_info
SET lookup_carrier = l.carrier, lookup_type = l.line_type, looked_up_at = l.at
FROM (SELECT phone, arg_max(detail, position) AS carrier, arg_max(line_type, position)
             AS line_type, max(occurred_at) AS at
      FROM batch WHERE type = 'number.looked_up' GROUP BY phone) AS l
WHERE number_info.phone = l.phone;

-- Their messages carry the number's carrier and line type (schema/duckdb/model.sql): the
-- looked-up numbers' messages take the answer. None was first seen before $looked_up_from
-- (analytics/reader.py asks PostgreSQL's indexes): older files are skipped by their min/max.
UPDATE messages SET carrier = d.carrier, line_type = d.line_type
FROM number_dims() d
WHERE messages.to_number = d.phone
  AND messages.first_seen_at >= $looked_up_from
  AND d.phone IN (SELECT phone FROM batch WHERE type = 'number.looked_up')
  AND (messages.carrier IS DISTINCT FROM d.carrier
       OR messages.line_type IS DISTINCT FROM d.line_type)
