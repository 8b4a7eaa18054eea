"""Backups that cannot mismatch: one snapshot of the database, its uploads and its migration state."""

from __future__ import annotations

from guard.backup.builder import MISSING_AT_BACKUP, BackupResult, run_backup
from guard.backup.drill import DrillResult, run_drill
from guard.backup.prune import PruneResult, run_prune
from guard.backup.remote.offsite import run_copy, run_prune_remote

__all__ = [
    "MISSING_AT_BACKUP",
    "BackupResult",
    "DrillResult",
    "PruneResult",
    "run_backup",
    "run_drill",
    "run_copy",
    "run_prune",
    "run_prune_remote",
]
