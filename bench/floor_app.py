"""The latency floor's Celery app: a task that does nothing but note when it started (bench/floor.py).

Configured as workers/app.py configures guard's (Redis broker, late acks, prefetch 1, JSON, no
results, a key prefix), so publish -> run here is what Celery alone costs guard's path.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BROKER_PREFIX", "guard-bench-floor:")
QUEUE = "floor"
SEEN = f"{PREFIX}seen"

app = Celery("guard-bench-floor", broker=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    broker_transport_options={"global_keyprefix": PREFIX},
    worker_hijack_root_logger=False,
)
_client: redis.Redis | None = None


@app.task(name="floor.started")
def started(key: str) -> None:
    """Note this task's start (wall clock, the publisher's machine) under its key."""
    at = time.time()
    global _client
    if _client is None:
        _client = redis.Redis.from_url(REDIS_URL)
    _client.hset(SEEN, key, repr(at))
