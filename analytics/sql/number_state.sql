-- A number's running figures (table number_state) from `base`, its figures so far (none for a
-- number counted from nothing), plus `contribs`, the messages to add. Every figure is a count,
-- a min, a max or an arg-max by (time, code): adding is exact, in any order and any batching.
-- The figures "since the last delivery" start again when a newer delivery comes; that is exact
-- only if nothing counted in them is newer than that delivery: such numbers are put in `slow`
-- for the caller to recompute from all their messages (a delivery arriving after a later
-- failure was counted, rare).
CREATE OR REPLACE TEMP TABLE added AS
SELECT phone, count(*) FILTER (WHERE is_new) AS sends,
       count(*) FILTER (WHERE d) AS deliveries, count(*) FILTER (WHERE f) AS failures,
       max(t) FILTER (WHERE d) AS last_delivered_at,
       min(t) FILTER (WHERE f) AS first_failure_at,
       max(t) FILTER (WHERE f) AS last_failure_at,
       arg_max(error_code, (t, error_code)) FILTER (WHERE error_code IS NOT NULL)
           AS last_error,
       max(t) FILTER (WHERE error_code IS NOT NULL) AS last_error_at
FROM contribs GROUP BY phone;

CREATE OR REPLACE TEMP TABLE horizon AS
SELECT a.phone, greatest(b.last_delivered_at, a.last_delivered_at) AS last_delivered_at,
       greatest(b.last_delivered_at, a.last_delivered_at) IS DISTINCT FROM b.last_delivered_at
           AS restart,
       b.since_at
FROM added a LEFT JOIN base b USING (phone);

CREATE OR REPLACE TEMP TABLE slow AS
SELECT phone FROM horizon WHERE restart AND since_at > last_delivered_at;

CREATE OR REPLACE TEMP TABLE fresh_state AS
WITH since AS (
    SELECT c.phone,
           count(*) FILTER (WHERE c.f) AS consecutive_failures,
           count(*) FILTER (WHERE list_contains($unreachable_codes, c.error_code))
               AS unreachable_failures,
           list(DISTINCT date_trunc('day', c.t)) FILTER (
               WHERE list_contains($unreachable_codes, c.error_code)) AS unreachable_days,
           arg_max(c.error_code, (c.t, c.error_code)) FILTER (
               WHERE list_contains($permanent_codes, c.error_code)) AS permanent_code,
           max(c.t) FILTER (WHERE list_contains($permanent_codes, c.error_code))
               AS permanent_at,
           count(*) FILTER (WHERE list_contains($permanent_codes, c.error_code))
               AS permanent_failures,
           arg_max(c.error_code, (c.t, c.error_code)) FILTER (
               WHERE list_contains($blocked_codes, c.error_code)) AS blocked_code,
           max(c.t) FILTER (WHERE list_contains($blocked_codes, c.error_code)) AS blocked_at,
           max(c.t) FILTER (WHERE list_contains($opt_out_codes, c.error_code))
               AS opt_out_code_at,
           max(c.t) FILTER (WHERE c.f OR c.error_code IS NOT NULL) AS since_at
    FROM contribs c JOIN horizon h USING (phone)
    WHERE h.last_delivered_at IS NULL OR c.t > h.last_delivered_at
    GROUP BY c.phone
),
kept AS (   -- the since figures so far, unless a newer delivery starts them again
    SELECT b.* FROM base b JOIN horizon h USING (phone) WHERE NOT h.restart
),
codes AS (
    SELECT phone, list({'code': code, 'n': n} ORDER BY code) AS code_counts,
           string_agg(code || 'x' || n, ', ' ORDER BY n DESC, code) AS error_codes
    FROM (SELECT phone, code, sum(n)::INTEGER AS n
          FROM (SELECT phone, u.code, u.n
                FROM (SELECT phone, unnest(code_counts) AS u FROM base SEMI JOIN added USING (phone))
                UNION ALL
                SELECT phone, error_code, 1 FROM contribs WHERE error_code IS NOT NULL)
          GROUP BY ALL)
    GROUP BY phone
)
SELECT a.phone,
       (coalesce(b.sends, 0) + a.sends)::INTEGER AS sends,
       (coalesce(b.deliveries, 0) + a.deliveries)::INTEGER AS deliveries,
       (coalesce(b.failures, 0) + a.failures)::INTEGER AS failures,
       h.last_delivered_at,
       least(b.first_failure_at, a.first_failure_at) AS first_failure_at,
       greatest(b.last_failure_at, a.last_failure_at) AS last_failure_at,
       CASE WHEN a.last_error_at IS NOT NULL AND (b.last_error_at IS NULL
                 OR (a.last_error_at, a.last_error) > (b.last_error_at, b.last_error))
            THEN a.last_error ELSE b.last_error END AS last_error,
       greatest(b.last_error_at, a.last_error_at) AS last_error_at,
       k.code_counts, k.error_codes,
       greatest(kept.since_at, s.since_at) AS since_at,
       (coalesce(kept.consecutive_failures, 0) + coalesce(s.consecutive_failures, 0))::INTEGER
           AS consecutive_failures,
       (coalesce(kept.unreachable_failures, 0) + coalesce(s.unreachable_failures, 0))::INTEGER
           AS unreachable_failures,
       list_sort(list_distinct(list_concat(coalesce(kept.unreachable_days, []),
                                           coalesce(s.unreachable_days, []))))
           AS unreachable_days,
       CASE WHEN s.permanent_at IS NOT NULL AND (kept.permanent_at IS NULL
                 OR (s.permanent_at, s.permanent_code) > (kept.permanent_at, kept.permanent_code))
            THEN s.permanent_code ELSE kept.permanent_code END AS permanent_code,
       greatest(kept.permanent_at, s.permanent_at) AS permanent_at,
       (coalesce(kept.permanent_failures, 0) + coalesce(s.permanent_failures, 0))::INTEGER
           AS permanent_failures,
       CASE WHEN s.blocked_at IS NOT NULL AND (kept.blocked_at IS NULL
                 OR (s.blocked_at, s.blocked_code) > (kept.blocked_at, kept.blocked_code))
            THEN s.blocked_code ELSE kept.blocked_code END AS blocked_code,
       greatest(kept.blocked_at, s.blocked_at) AS blocked_at,
       greatest(kept.opt_out_code_at, s.opt_out_code_at) AS opt_out_code_at
FROM added a
JOIN horizon h USING (phone)
LEFT JOIN base b USING (phone)
LEFT JOIN kept USING (phone)
LEFT JOIN since s USING (phone)
LEFT JOIN codes k USING (phone);
