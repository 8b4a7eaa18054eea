"""Small transactions that give way to the app: each batch under lock_timeout, retried when it times out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import psycopg
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from guard.db.database import Database
from guard.errors import UnreachableError

T = TypeVar("T")
BATCH_ROWS = 500  # rows one transaction changes: its locks are held for milliseconds
LOCK_TIMEOUT_MS = 200  # the longest a batch waits for a lock the app holds before giving way
ATTEMPTS = 20
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_batch(
    db: Database, work: Callable[[], T], lock_timeout_ms: int = LOCK_TIMEOUT_MS, attempts: int = ATTEMPTS
) -> T:
    """Run work in one transaction that waits at most lock_timeout_ms for any lock, retrying if it waited.

    A batch that times out rolls back whole, so running it again is safe; the app's write that held
    the lock goes first, and ours follows a moment later.
    """
    retrying = Retrying(
        retry=retry_if_exception_type(psycopg.errors.LockNotAvailable),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.02, max=1.0),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt, db.transaction():
                db.execute(SET_LOCK_TIMEOUT, (f"{lock_timeout_ms}ms",))
                return work()
    except psycopg.errors.LockNotAvailable:
        raise UnreachableError(
            f"a batch waited for the app's locks {attempts} times in a row; nothing of it was changed, "
            "run the repair again later"
        ) from None
    raise AssertionError("unreachable")  # Retrying either returns or raises
