-- Lookup v2 answers (number.looked_up events): the latest one per number wins.
UPDATE number_info
SET lookup_carrier = l.carrier, lookup_type = l.line_type, looked_up_at = l.at
FROM (SELECT phone, arg_max(detail, position) AS carrier, arg_max(line_type, position)
             AS line_type, max(occurred_at) AS at
      FROM batch WHERE type = 'number.looked_up' GROUP BY phone) AS l
WHERE number_info.phone = l.phone
