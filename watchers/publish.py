"""The one way to hand work to Celery from outside a worker: a producer-only app built from guard/config.

The watchers use it, and so does `guard sweep` (guard/cli imports this module inside the command's
function, so no other guard command loads Celery). It does not import workers.app: that module builds
the worker's whole configuration (the beat schedule included), and a setting only the beat reads must
not stop a watcher or an operator's sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import kombu.exceptions
from celery import Celery

from guard.config.settings import Settings
from guard.continuous.queues import EVENTS, SWEEPS

# kombu retries a publish this often before it raises; the watchers' own backoff takes over then.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


class Sender(Protocol):
    """What the watchers use of a Celery app (Celery ships no type stubs)."""

    def send_task(self, name: str, *, args: Sequence[Any], queue: str, **options: Any) -> object: ...


def producer(settings: Settings) -> Sender:
    """Build a Celery app that only publishes, to the configured broker and key prefix."""
    celery = Celery("incident-guard-watcher", broker=settings.redis_url, set_as_current=False)
    if settings.broker_prefix:
        celery.conf.broker_transport_options = {"global_keyprefix": settings.broker_prefix}
    app: Sender = celery
    return app


class Publisher:
    """Send tasks to their queue; raise one of watchers.transient.TRANSIENT if the broker cannot take it."""

    def __init__(self, app: Sender) -> None:
        self.app = app

    def send(self, task: str, args: Sequence[Any], queue: str = EVENTS) -> None:
        """Send one task, retried briefly by kombu; a socket error counts as broker trouble."""
        try:
            self.app.send_task(task, args=list(args), queue=queue, retry=True, retry_policy=RETRY_POLICY)
        except OSError as exc:
            raise kombu.exceptions.OperationalError(f"broker: {exc}") from exc

    def check_rows(self, table: str, keys: Sequence[str], paths: Sequence[str], ids: Sequence[int]) -> None:
        """Ask for one batch of changed rows to be checked."""
        self.send("guard.check_rows", [table, list(keys), list(paths), list(ids)])

    def check_files(self, paths: Sequence[str]) -> None:
        """Ask for upload paths to be checked."""
        self.send("guard.check_files", [list(paths)])

    def sweep_files(self) -> None:
        """Ask for a full files sweep (inotify may have dropped events before we started)."""
        self.app.send_task("guard.sweep", args=["files"], queue=SWEEPS)

    def sweep(self, name: str, task_id: str) -> None:
        """Ask for one whole check as beat does; task_id keys its run in guard.task_runs."""
        try:
            self.app.send_task(
                "guard.sweep",
                args=[name],
                queue=SWEEPS,
                task_id=task_id,
                retry=True,
                retry_policy=RETRY_POLICY,
            )
        except OSError as exc:
            raise kombu.exceptions.OperationalError(f"broker: {exc}") from exc
