"""The latency floor's Celery app delivers as guard's workers do, so the floor is Celery's cost to guard."""

from __future__ import annotations

from bench import floor_app
from workers.app import app as guard_app

# What decides how a message reaches a task and is acknowledged (bench/floor_app.py copies it: importing
# workers.app there would connect the worker's own signals, its heartbeat among them, in the floor's worker)
DELIVERY = (
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "task_ignore_result",
    "task_serializer",
    "accept_content",
)


def test_the_floor_app_delivers_with_the_workers_settings() -> None:
    assert {k: floor_app.app.conf[k] for k in DELIVERY} == {k: guard_app.conf[k] for k in DELIVERY}
