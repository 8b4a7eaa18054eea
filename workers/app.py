"""The Celery app: Redis broker, late acks, prefetch 1, separate queues, the beat schedule, Sentry."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue

from guard.queues import ALERTS, EVENTS, SWEEPS
from guard.settings import Settings, load_settings
from workers.schedule import beat_schedule

settings: Settings = load_settings()


def broker_options(s: Settings) -> dict[str, Any]:
    """Keep every broker key under the configured prefix (tests and tenants never collide)."""
    options: dict[str, Any] = {"visibility_timeout": 3600}
    if s.broker_prefix:
        options["global_keyprefix"] = s.broker_prefix
    return options


app = Celery("incident-guard", broker=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=EVENTS,
    task_queues=[Queue(EVENTS), Queue(SWEEPS), Queue(ALERTS)],
    task_routes={
        "guard.sweep": {"queue": SWEEPS},
        "guard.maintenance": {"queue": SWEEPS},
        "guard.deliver_alerts": {"queue": ALERTS},
    },
    broker_transport_options=broker_options(settings),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule=beat_schedule(settings),
    timezone="UTC",
)


@signals.celeryd_init.connect
@signals.beat_init.connect
def start_sentry(**_: Any) -> None:
    """Start Sentry with its Celery integration and Crons monitors on the beat tasks, when configured."""
    if not settings.sentry_dsn:
        return
    from sentry_sdk.integrations.celery import CeleryIntegration

    from guard.alerts.sentry import init_sentry

    # Sentry matches exclude_beat_tasks against the beat entry's name (the monitor slug), not the task's;
    # the 10-second alert delivery is housekeeping, not a cron job worth a monitor.
    init_sentry(
        settings.sentry_dsn,
        [CeleryIntegration(monitor_beat_tasks=True, exclude_beat_tasks=["^deliver-alerts$"])],
    )
