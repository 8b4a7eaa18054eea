"""The beat schedule, from settings: sweeps hourly, migrations and drift daily, backups nightly."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from guard.config.settings import Settings
from guard.errors import ConfigError

ALERT_EVERY_S = 10.0


def cron(expression: str, setting: str) -> crontab:
    """Parse 'minute hour day-of-month month day-of-week' or fail naming the setting."""
    parts = expression.split()
    if len(parts) != 5:
        raise ConfigError(f"{setting.upper()}: expected 5 cron fields, got {expression!r}")
    minute, hour, day_of_month, month, day_of_week = parts
    try:
        return crontab(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month, day_of_week=day_of_week
        )
    except ValueError as exc:
        raise ConfigError(f"{setting.upper()}: invalid cron {expression!r}: {exc}") from None


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return Celery's beat_schedule for these settings."""
    sweeps = cron(settings.sweep_cron, "sweep_cron")
    entries: dict[str, dict[str, Any]] = {
        "sweep-integrity": {"task": "guard.sweep", "schedule": sweeps, "args": ["integrity"]},
        "sweep-files": {"task": "guard.sweep", "schedule": sweeps, "args": ["files"]},
        "deliver-alerts": {"task": "guard.deliver_alerts", "schedule": ALERT_EVERY_S},
    }
    if settings.migrations_dir is not None:
        daily = cron(settings.daily_cron, "daily_cron")
        for name in ("migrations", "drift"):
            entries[f"sweep-{name}"] = {"task": "guard.sweep", "schedule": daily, "args": [name]}
    entries["history-snapshot"] = {
        "task": "guard.history_snapshot",
        "schedule": cron(settings.snapshot_cron, "snapshot_cron"),
    }
    if settings.slack_webhook_url:
        entries["weekly-report"] = {
            "task": "guard.weekly_report",
            "schedule": cron(settings.report_cron, "report_cron"),
        }
    if settings.backup_dir is not None:
        for action in ("backup", "prune", "drill"):
            entries[action] = {
                "task": "guard.maintenance",
                "schedule": cron(getattr(settings, f"{action}_cron"), f"{action}_cron"),
                "args": [action],
            }
        if settings.backup_remotes:  # backup -> copy -> prune as one chain (workers/tasks.py: nightly)
            entries["backup"] = {"task": "guard.nightly", "schedule": entries.pop("backup")["schedule"]}
            del entries["prune"]
    return entries
