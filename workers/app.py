"""The Celery app: Redis broker, late acks, prefetch 1, separate queues, the beat schedule, Sentry."""

from __future__ import annotations

import atexit
import logging
from typing import Any

from celery import Celery, signals
from kombu import Queue

from guard.config.settings import Settings, load_settings
from guard.continuous import liveness
from guard.continuous.queues import ALERTS, EVENTS, SWEEPS
from watchers.pulse import CanaryDuty, Pulse
from workers.schedule import beat_schedule

settings: Settings = load_settings()
log = logging.getLogger("guard.workers")
RETRY_BACKOFF_MAX_S = 60  # workers/tasks.py: the longest countdown before a retry


def soft_time_limit(s: Settings) -> int:
    """A minute before the hard limit: the task gets SoftTimeLimitExceeded and can clean up."""
    return max(1, s.task_time_limit - 60)


def redelivery_gap(s: Settings) -> str | None:
    """Say why Redis could deliver a task again while it still runs or waits, or None when it cannot.

    A message is acknowledged when its task ends (late acks); one held longer than visibility_timeout,
    running up to task_time_limit or waiting out a countdown (a retry's backoff, a young file's
    grace period), is given to another worker. guard/continuous/runs.py keeps such a copy from doing the work
    twice; these settings keep it from happening at all.
    """
    longest = max(s.task_time_limit, s.orphan_grace + 1, RETRY_BACKOFF_MAX_S)
    if s.visibility_timeout > longest:
        return None
    return (
        f"VISIBILITY_TIMEOUT ({s.visibility_timeout} s) is not longer than the longest a task may hold "
        f"its message ({longest} s: TASK_TIME_LIMIT, ORPHAN_GRACE + 1); Redis will deliver such tasks "
        "twice (the second copy does nothing)"
    )


def broker_options(s: Settings) -> dict[str, Any]:
    """Keep every broker key under the configured prefix (tests and tenants never collide)."""
    options: dict[str, Any] = {
        "visibility_timeout": s.visibility_timeout,
        # look for messages past the timeout every few seconds (kombu's default: every 100 s)
        "unacked_restore_interval": min(10, max(1, s.visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
    }
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
        "guard.history_snapshot": {"queue": SWEEPS},
        "guard.weekly_report": {"queue": ALERTS},
        "guard.maintenance": {"queue": SWEEPS},
        "guard.nightly": {"queue": SWEEPS},
        "guard.deliver_alerts": {"queue": ALERTS},
    },
    broker_transport_options=broker_options(settings),
    task_time_limit=settings.task_time_limit,
    task_soft_time_limit=soft_time_limit(settings),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule=beat_schedule(settings),
    timezone="UTC",
)


@signals.celeryd_init.connect
def warn_of_redelivery(**_: Any) -> None:
    """Warn at worker start when the time limits and the visibility timeout disagree."""
    gap = redelivery_gap(settings)
    if gap is not None:
        log.warning("%s", gap)


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
        settings.sentry_dsn.get_secret_value(),
        [CeleryIntegration(monitor_beat_tasks=True, exclude_beat_tasks=["^deliver-alerts$"])],
        secrets=settings.secret_values(),
    )


# Heartbeats (watchers/pulse.py): each worker records one under its node name (celery@host, unique per
# worker) from the moment it consumes until it shuts down; beat records its own and runs the canary.
pulses: list[Pulse] = []


@signals.worker_ready.connect
def start_worker_heartbeat(sender: Any = None, **_: Any) -> None:
    """Record this worker's heartbeat while it runs."""
    instance = getattr(sender, "hostname", None)
    pulses.append(Pulse(settings, liveness.WORKER, instance=instance).start())


@signals.worker_shutdown.connect
def stop_heartbeats(**_: Any) -> None:
    """A clean stop deletes the row: `guard status` says missing rather than stale."""
    while pulses:
        pulses.pop().stop()


@signals.beat_init.connect
def start_beat_heartbeat(**_: Any) -> None:
    """Record beat's heartbeat and, on the same loop, send the canary and judge the stall."""
    duty = CanaryDuty(settings)
    pulses.append(Pulse(settings, liveness.BEAT, duty=duty, interval=duty.interval).start())
    atexit.register(stop_heartbeats)
