-- `guard serve`: per check and kind, the open findings, every finding ever opened, and the resolved
-- ones, from the tally (a few rows) plus what writers appended since it was last folded.
SELECT check_name, kind, sum(opened) - sum(resolved), sum(opened), sum(resolved)
FROM (SELECT check_name, kind, opened, resolved FROM guard.finding_tally
      UNION ALL
      SELECT check_name, kind, opened, resolved FROM guard.finding_tally_log) AS counted
GROUP BY check_name, kind
HAVING sum(opened) <> 0 OR sum(resolved) <> 0
ORDER BY check_name, kind
