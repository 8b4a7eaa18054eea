-- Today's (UTC) image counts for the weekly missing-image ratio; as history_daily_ads.sql.
INSERT INTO guard.history_daily AS d (day, image_rows, image_rows_missing, taken_at)
VALUES ((now() AT TIME ZONE 'UTC')::date, %(rows)s, %(missing)s, now())
ON CONFLICT (day) DO UPDATE
    SET image_rows = EXCLUDED.image_rows, image_rows_missing = EXCLUDED.image_rows_missing,
        taken_at = EXCLUDED.taken_at
    WHERE %(overwrite)s OR d.image_rows IS NULL OR d.image_rows_missing IS NULL
