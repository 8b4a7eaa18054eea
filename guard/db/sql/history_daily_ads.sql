-- Today's (UTC) ad counts for the weekly 404 ratio. A sweep fills them only where today has none
-- (overwrite false); beat's daily snapshot replaces them.
INSERT INTO guard.history_daily AS d (day, ads, ads_unresolvable, taken_at)
VALUES ((now() AT TIME ZONE 'UTC')::date, %(ads)s, %(bad)s, now())
ON CONFLICT (day) DO UPDATE
    SET ads = EXCLUDED.ads, ads_unresolvable = EXCLUDED.ads_unresolvable, taken_at = EXCLUDED.taken_at
    WHERE %(overwrite)s OR d.ads IS NULL OR d.ads_unresolvable IS NULL
