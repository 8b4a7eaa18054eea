-- Per ISO week: the days whose snapshot has each half, and the sums of those halves.
SELECT date_trunc('week', day::timestamp) AS week,
       count(*) FILTER (WHERE ads IS NOT NULL AND ads_unresolvable IS NOT NULL),
       coalesce(sum(ads) FILTER (WHERE ads IS NOT NULL AND ads_unresolvable IS NOT NULL), 0)::bigint,
       coalesce(sum(ads_unresolvable) FILTER (WHERE ads IS NOT NULL), 0)::bigint,
       count(*) FILTER (WHERE image_rows IS NOT NULL AND image_rows_missing IS NOT NULL),
       coalesce(sum(image_rows) FILTER (WHERE image_rows_missing IS NOT NULL), 0)::bigint,
       coalesce(sum(image_rows_missing) FILTER (WHERE image_rows IS NOT NULL), 0)::bigint
FROM guard.history_daily
WHERE day >= %(since_day)s AND day < %(until_day)s
GROUP BY 1
