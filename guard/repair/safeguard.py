"""What every repair does before it changes anything: a guard backup, unless told there is none to take."""

from __future__ import annotations

from guard.config.settings import Settings
from guard.errors import ConfigError
from guard.progress import ProgressFactory, no_progress


def backup_first(settings: Settings, no_backup: bool, progress: ProgressFactory = no_progress) -> str | None:
    """Take a guard backup and return its id; None with no_backup. Without BACKUP_DIR, refuse."""
    if no_backup:
        return None
    if settings.backup_dir is None:
        raise ConfigError(
            "BACKUP_DIR is not set: a repair takes a backup first; set BACKUP_DIR, "
            "or pass --no-backup to repair without one"
        )
    from guard.backup import run_backup

    return run_backup(settings, progress).id
