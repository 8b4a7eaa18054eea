"""Thin tasks that call guard/: check rows, check files, sweep, maintenance, deliver alerts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TypedDict

from celery import Task, chain

from guard.alerts import transports
from guard.alerts.delivery import deliver
from guard.checks import registry
from guard.continuous import process as sync
from guard.continuous import runs
from guard.db.database import Database
from watchers.transient import TRANSIENT
from workers.app import app, settings

log = logging.getLogger(__name__)
# what a bound task's `self` is: a Celery task returning counts (celery-types' generic Task)
CountingTask = Task[..., dict[str, int]]


# Database and Redis trouble is retried with backoff. Every task is safe to run twice: event checks
# and alert delivery are idempotent by construction (they reconcile what they read now), and the long
# ones (sweeps, backup, prune, drill) run once per task id however often the broker delivers it
# (guard/continuous/runs.py): a second delivery waits for the first, then does nothing and says so.
class RetryPolicy(TypedDict):
    """Celery's retry options, typed so that app.task() checks each one."""

    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


RETRY: RetryPolicy = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@app.task(name="guard.check_rows", **RETRY)
def check_rows(table: str, keys: list[str], paths: list[str], outbox_ids: list[int]) -> dict[str, int]:
    """Check changed rows of one table and mark their outbox entries processed."""
    try:
        outcome = sync.process_rows(settings, table, keys, paths, outbox_ids)
    except Exception as exc:  # kept on the rows for their check_failed finding, then raised as ever
        sync.record_failure(settings, outbox_ids, exc)
        raise
    follow_up(outcome)
    return {"opened": outcome.changes.opened, "resolved": outcome.changes.resolved}


@app.task(name="guard.check_files", **RETRY)
def check_files(paths: list[str]) -> dict[str, int]:
    """Check upload paths the watcher saw change (and again once a young file's grace ends)."""
    outcome = sync.process_paths(settings, paths)
    follow_up(outcome)
    return {"opened": outcome.changes.opened, "resolved": outcome.changes.resolved}


def once(task: CountingTask, what: str, work: Callable[[], sync.Outcome]) -> sync.Outcome | None:
    """Do this delivery's work unless another delivery of the same task ran or runs it (then None)."""
    run_key = task.request.id or uuid.uuid4().hex  # called directly (no broker): always its own run
    url = settings.require_database_url()
    with runs.single_run(url, run_key, what, wait_s=settings.task_time_limit) as delivery:
        return work() if delivery.works else None


@app.task(name="guard.sweep", bind=True, **RETRY)
def sweep(self: CountingTask, name: str) -> dict[str, int]:
    """Run one whole check and reconcile its findings; skip checks that are not available."""
    if name not in registry():
        log.warning("sweep: no check named %r here; skipped", name)
        return {}
    if name in ("migrations", "drift") and settings.migrations_dir is None:
        return {}
    outcome = once(self, f"sweep {name}", lambda: sync.Outcome(sync.run_sweep(settings, name)))
    if outcome is None:
        return {"duplicate": 1}
    follow_up(outcome)
    return {"opened": outcome.changes.opened, "resolved": outcome.changes.resolved}


class MaintenanceFailed(Exception):
    """A backup, prune or drill failed. Its finding is already open and alerted once per kind."""


# Failing is what tells Celery, Flower and Sentry Crons (an "error" check-in) that the nightly job
# did not do its work. MaintenanceFailed is declared in `throws`: an expected error, logged without a
# traceback, and Sentry's Celery integration does not capture it again as an exception event.
@app.task(name="guard.maintenance", bind=True, throws=(MaintenanceFailed,), **RETRY)
def maintenance(self: CountingTask, action: str) -> dict[str, int]:
    """Run backup, prune or drill; a failure becomes a finding (and so an alert) and fails the task."""
    outcome = once(self, f"maintenance {action}", lambda: sync.run_maintenance(settings, action))
    if outcome is None:
        return {"duplicate": 1}
    follow_up(outcome)
    if outcome.failure is not None:
        raise MaintenanceFailed(outcome.failure)
    return {"opened": outcome.changes.opened, "resolved": outcome.changes.resolved}


@app.task(name="guard.history_snapshot", **RETRY)
def history_snapshot() -> dict[str, int]:
    """Take today's snapshot of the weekly ratios' counts and forget history past HISTORY_DAYS."""
    from guard.history import daily

    snapshot, events_gone, days_gone = daily.upkeep(settings)
    return {"ads": snapshot.ads or 0, "events_forgotten": events_gone, "days_forgotten": days_gone}


@app.task(name="guard.weekly_report")
def weekly_report() -> dict[str, int]:
    """Post the weekly numbers to Slack (no retry: a failed post is logged, scrubbed, and next week comes)."""
    from guard.history.weekly_post import post_weekly

    return {"lines": len(post_weekly(settings).splitlines())}


# With BACKUP_REMOTES the beat runs this instead of separate backup and prune entries: each step is its
# own maintenance task (its own finding, its own failure), and a step runs only once the one before it
# succeeded, so no copy is taken of a failed backup and no prune runs while a copy is unfinished.
NIGHTLY = ("backup", "copy", "prune", "prune_remote")


@app.task(name="guard.nightly")
def nightly() -> str:
    """Start the nightly chain: backup, its off-site copy, then the local and the remotes' prune.

    A failed copy (a remote down for days) still runs the local prune, through its error callback:
    otherwise the local disk would fill while the remote is away.
    """
    steps = [maintenance.si(step) for step in NIGHTLY]
    steps[NIGHTLY.index("copy")].on_error(maintenance.si("prune"))
    return str(chain(*steps).apply_async().id)


@app.task(name="guard.deliver_alerts", **RETRY)
def deliver_alerts() -> dict[str, int]:
    """Send queued notices to Sentry and Slack; an unreachable channel keeps them for later."""
    channels = transports(settings)
    if not channels:
        return {}
    with Database(settings.require_database_url(), application_name="guard-alerts") as db:
        return deliver(db, channels)


def follow_up(outcome: sync.Outcome) -> None:
    """Wake the alerts task and schedule young files for a look once their grace period ends."""
    alerting = settings.sentry_dsn or settings.slack_webhook_url
    if alerting and (outcome.changes.opened or outcome.changes.resolved):
        deliver_alerts.apply_async()
    if outcome.recheck:
        delay = max(outcome.recheck.values()) + 1
        check_files.apply_async(args=(sorted(outcome.recheck),), countdown=delay)
