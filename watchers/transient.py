"""Connection trouble with Postgres, Redis or the broker: what the workers and the watchers retry."""

from __future__ import annotations

import kombu.exceptions
import psycopg
import redis.exceptions

from guard.errors import UnreachableError

# One tuple for both sides: workers/tasks.py retries a task on these, the watchers reconnect on them.
# It lives here, not in workers/, because importing workers/ builds the Celery app (and its beat
# schedule), which the watchers must not need.
TRANSIENT: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    UnreachableError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
