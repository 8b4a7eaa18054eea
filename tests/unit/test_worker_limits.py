"""The time settings agree: no lease runs out while a task still retries, no message is redelivered
while its task still runs (items 7 and 8)."""

from __future__ import annotations

from typing import Any

from guard.config.settings import Settings
from workers.app import redelivery_gap
from workers.tasks import RETRY


def retry_schedule_s(retry: dict[str, Any]) -> float:
    """The longest a task spends waiting between its tries, as Celery's retry_backoff computes it."""
    factor, cap = int(retry["retry_backoff"]), int(retry["retry_backoff_max"])
    return float(sum(min(cap, factor * 2**n) for n in range(int(retry["max_retries"]))))


def test_the_outbox_lease_outlives_a_tasks_whole_retry_schedule() -> None:
    assert retry_schedule_s(RETRY) == 183
    assert Settings().lease_seconds > retry_schedule_s(RETRY)


def test_the_default_limits_give_redis_no_reason_to_deliver_a_task_twice() -> None:
    assert redelivery_gap(Settings()) is None
    short = redelivery_gap(Settings(visibility_timeout=600))
    assert short is not None and "VISIBILITY_TIMEOUT (600 s)" in short
