"""Queue depths when Redis cannot be reached: one clear error, never the password (no Redis needed)."""

from __future__ import annotations

import pytest
import redis

from guard.continuous.queues import depths
from guard.errors import UnreachableError


def test_an_unreachable_redis_is_one_clear_error() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(UnreachableError, match=r"cannot reach Redis at 127\.0\.0\.1:1"):
        depths(dead)


def test_the_error_never_carries_the_password() -> None:
    dead = redis.Redis.from_url("redis://user:s3cret@127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(UnreachableError) as caught:
        depths(dead)
    assert "s3cret" not in str(caught.value)
