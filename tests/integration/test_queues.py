"""Queue depths read from Redis: the same tests on the real local Redis and on fakeredis, proving the fake."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from celery import Celery
from kombu import Queue

from guard.continuous.queues import QUEUES, depths, queue_keys

pytestmark = pytest.mark.integration

REAL_REDIS = os.environ.get("GUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["fakeredis", "redis"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis()
        return
    real = redis.Redis.from_url(REAL_REDIS)
    yield real
    real.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    name = f"guardtest-{uuid.uuid4().hex[:10]}:"
    yield name
    keys = list(client.scan_iter(match=f"{name}*"))
    if keys:
        client.delete(*keys)


def test_an_empty_broker_has_nothing_waiting(client: redis.Redis, prefix: str) -> None:
    found = depths(client, prefix)
    assert found.waiting == {q: 0 for q in QUEUES} and found.unacknowledged == 0


def test_waiting_counts_every_priority_list_of_a_queue_and_only_under_the_prefix(
    client: redis.Redis, prefix: str
) -> None:
    plain, _, pri6, _ = queue_keys("events", prefix)
    client.rpush(plain, "a", "b")
    client.rpush(pri6, "c")
    client.rpush(prefix + "sweeps", "d")
    client.rpush("other-tenant:events", "x")  # another prefix is another deployment
    client.hset(prefix + "unacked", mapping={"tag1": "m", "tag2": "m"})
    found = depths(client, prefix)
    assert found.waiting == {"events": 3, "sweeps": 1, "alerts": 0}
    assert found.unacknowledged == 2
    client.delete("other-tenant:events")


def test_counts_what_a_real_celery_client_sent(prefix: str) -> None:
    """The key layout is kombu's: send real tasks (no worker runs) and count them."""
    app = Celery("guard-queues-test", broker=REAL_REDIS)
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    app.conf.task_queues = [Queue(q) for q in QUEUES]
    for _ in range(3):
        app.send_task("guard.check_rows", args=["ads", ["1"], [], []], queue="events")
    app.send_task("guard.sweep", args=["files"], queue="sweeps", priority=9)
    client = redis.Redis.from_url(REAL_REDIS)
    try:
        found = depths(client, prefix)
        assert found.waiting == {"events": 3, "sweeps": 1, "alerts": 0}
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        app.close()
