"""How much checking work waits in the broker, read straight from Redis for `guard status`.

The Celery workers in workers/ put their tasks on three queues; with the Redis transport each queue
is a list (one more list per priority step above 0) and the messages a worker has taken but not yet
acknowledged (late acks: running, or waiting out a countdown) sit in one hash. Reading those needs
only the key names, not Celery, so ops can ask "should I scale workers?" from anywhere guard runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guard.errors import UnreachableError

if TYPE_CHECKING:  # imported where a client is made or read, so `import guard` never loads redis
    import redis

EVENTS, SWEEPS, ALERTS = "events", "sweeps", "alerts"
QUEUES = (EVENTS, SWEEPS, ALERTS)
# kombu's Redis transport: a message of priority p > 0 waits in "<queue>\x06\x16<p>".
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"


@dataclass(frozen=True)
class QueueDepths:
    """Tasks waiting per queue, and tasks taken by a worker but not yet acknowledged."""

    waiting: dict[str, int]
    unacknowledged: int

    def to_json(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "unacknowledged": self.unacknowledged}


def queue_keys(queue: str, prefix: str = "") -> list[str]:
    """The Redis lists that hold one queue's waiting messages, one per priority step."""
    return [prefix + queue + (f"{PRIORITY_SEP}{p}" if p else "") for p in PRIORITY_STEPS]


def depths(client: redis.Redis, prefix: str = "", queues: tuple[str, ...] = QUEUES) -> QueueDepths:
    """Count waiting and unacknowledged tasks in one round trip."""
    import redis.exceptions

    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue, prefix):
            pipe.llen(key)
    pipe.hlen(prefix + UNACKED)
    try:
        counts = [int(n) for n in pipe.execute()]
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise UnreachableError(f"cannot reach {describe_redis(client)}: {type(exc).__name__}") from None
    steps = len(PRIORITY_STEPS)
    waiting = {q: sum(counts[i * steps : (i + 1) * steps]) for i, q in enumerate(queues)}
    return QueueDepths(waiting, counts[-1])


def connect(url: str) -> redis.Redis:
    """A client that fails fast: `guard status` must answer even when Redis is down."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)


def describe_redis(client: redis.Redis) -> str:
    """Name the Redis server for messages, never with its password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"Redis at {kwargs['path']}"
    return f"Redis at {kwargs.get('host', '?')}:{kwargs.get('port', 6379)}"
