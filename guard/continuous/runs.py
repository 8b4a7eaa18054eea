"""One run per task delivery: a broker may hand a task out twice; the second copy does no work.

Redis gives a late-acknowledged message to another worker once its visibility timeout passes, and a
worker that died is redelivered too. Each run of a delivery is keyed (the task's id): the copy that
does the work holds a session advisory lock on the key for as long as it works, and records the
run as finished when it is done. A copy that finds the lock held waits for the holder; it then sees
the run recorded and does nothing. A holder that died without recording leaves the work to the
copy that comes next, which is what a redelivery is for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from guard.db.database import Database

log = logging.getLogger("guard.continuous.runs")

KEEP_DAYS = 7
POLL_S = 0.5
DELIVERED = """
INSERT INTO guard.task_runs AS r (run_key, task) VALUES (%s, %s)
ON CONFLICT (run_key) DO UPDATE SET deliveries = r.deliveries + 1
RETURNING deliveries
"""
# The two-key form: its lock space is apart from lock_subjects' one-key locks.
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('guard.task_runs'), hashtext(%s))"
FINISHED = "SELECT finished_at FROM guard.task_runs WHERE run_key = %s AND finished_at IS NOT NULL"
FINISH = "UPDATE guard.task_runs SET finished_at = clock_timestamp() WHERE run_key = %s"
FINISHED_ANY = "SELECT run_key FROM guard.task_runs WHERE run_key = ANY(%s) AND finished_at IS NOT NULL"
FORGET = "DELETE FROM guard.task_runs WHERE finished_at < now() - make_interval(days => %s)"


@dataclass(frozen=True)
class Delivery:
    """Whether this delivery of a run does the work, and if not, why not (for the log)."""

    works: bool
    number: int
    why_not: str = ""


@contextmanager
def single_run(url: str, run_key: str, task: str, wait_s: float) -> Iterator[Delivery]:
    """Yield whether this delivery does the work; record the run finished when the block exits cleanly.

    A block that raises (a retry will follow) leaves the run unfinished, so the retry works.
    """
    with Database(url, application_name="guard-run") as db:
        row = db.fetch_one(DELIVERED, (run_key, task))
        number = int(row[0]) if row else 1
        if not _hold(db, run_key, wait_s):
            why = f"an earlier delivery still runs it after {wait_s:.0f} s of waiting"
            yield _skipped(task, run_key, number, why)
            return
        if db.fetch_one(FINISHED, (run_key,)) is not None:
            yield _skipped(task, run_key, number, "an earlier delivery already ran it")
            return
        yield Delivery(True, number)
        db.execute(FINISH, (run_key,))
        db.execute(FORGET, (KEEP_DAYS,))


def _hold(db: Database, run_key: str, wait_s: float) -> bool:
    """Take the run's lock, waiting up to wait_s for a delivery that holds it to finish or die."""
    deadline = time.monotonic() + wait_s
    while True:
        row = db.fetch_one(TRY_LOCK, (run_key,))
        if row is not None and row[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def _skipped(task: str, run_key: str, number: int, why: str) -> Delivery:
    log.warning("%s [%s]: delivery %d does nothing: %s", task, run_key, number, why)
    return Delivery(False, number, why)


def finished(db: Database, run_keys: list[str]) -> set[str]:
    """Return which of these runs a worker has recorded as finished (what `guard sweep` waits for)."""
    return {str(r[0]) for r in db.fetch_all(FINISHED_ANY, (run_keys,))}
