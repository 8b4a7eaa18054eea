-- Every repair run, newest first, with how many changes it recorded.
SELECT r.id, r.kind, r.started_at, r.backup_id, r.undoable, r.undone_at, r.detail,
       (SELECT count(*) FROM guard.repair_changes c WHERE c.run_id = r.id) AS changes
FROM guard.repair_runs r
ORDER BY r.started_at DESC, r.id DESC
