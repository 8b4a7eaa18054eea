"""Run repair steps one at a time under lock_timeout, retrying a step that timed out waiting for a lock."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from guard.db.database import Database
from guard.schema.steps import Step, qualified_index

SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, false)"
INVALID_INDEX = "SELECT NOT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass(%s)"
# The script's own SET of these would override guard's policy; guard's --lock-timeout governs.
OWN_SETTINGS = ("lock_timeout",)

RetryNotice = Callable[[Step, int, str], None]


@dataclass(frozen=True)
class LockPolicy:
    """How long one statement may wait for a lock, and how often a step that timed out is tried."""

    timeout: str = "2s"
    attempts: int = 10
    longest_pause: float = 30.0


DEFAULT_POLICY = LockPolicy()


@dataclass(frozen=True)
class AppliedStep:
    """A step that ran: its statement, its wall time (retries included) and how many tries it took."""

    number: int
    sql: str
    seconds: float
    attempts: int

    def to_json(self) -> dict[str, object]:
        seconds = round(self.seconds, 3)
        return {"step": self.number, "sql": self.sql, "seconds": seconds, "attempts": self.attempts}


@dataclass(frozen=True)
class StepFailure:
    """The step that stopped the run, with the database's error; later steps did not run."""

    number: int
    sql: str
    error: str

    def to_json(self) -> dict[str, object]:
        return {"step": self.number, "sql": self.sql, "error": self.error}


@dataclass(frozen=True)
class Application:
    """What applying a script did: the steps that ran, in order, and the one that failed, if any."""

    applied: tuple[AppliedStep, ...]
    failure: StepFailure | None = None


def apply_steps(
    db: Database,
    steps: Sequence[Step],
    policy: LockPolicy = DEFAULT_POLICY,
    on_retry: RetryNotice | None = None,
) -> Application:
    """Run each step in its own transaction (autocommit), so CONCURRENTLY can run and no lock is held long."""
    db.execute(SET_LOCK_TIMEOUT, (policy.timeout,))
    done: list[AppliedStep] = []
    for step in steps:
        if step.setting in OWN_SETTINGS:
            continue
        started = time.perf_counter()
        try:
            attempts = _run(db, step, policy, on_retry)
        except errors.LockNotAvailable as exc:
            why = f"{_first_line(exc)} ({policy.attempts} tries, lock_timeout {policy.timeout} each)"
            return Application(tuple(done), StepFailure(step.number, step.sql, why))
        except psycopg.Error as exc:
            return Application(tuple(done), StepFailure(step.number, step.sql, _first_line(exc)))
        done.append(AppliedStep(step.number, step.sql, time.perf_counter() - started, attempts))
    return Application(tuple(done))


def _run(db: Database, step: Step, policy: LockPolicy, on_retry: RetryNotice | None) -> int:
    def notice(state: object) -> None:
        if on_retry is not None:
            number = getattr(state, "attempt_number", 0)
            on_retry(step, number, f"waited {policy.timeout} for a lock")

    retrying = Retrying(
        retry=retry_if_exception_type(errors.LockNotAvailable),
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=0.2, max=policy.longest_pause),
        before_sleep=notice,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                _clear_invalid_leftover(db, step)
            db.execute(step.sql)
    return int(retrying.statistics.get("attempt_number", 1))


def _clear_invalid_leftover(db: Database, step: Step) -> None:
    """Drop the invalid index an interrupted CREATE INDEX CONCURRENTLY left, so the retry can build it."""
    name = qualified_index(step)
    if name is None or step.index is None:
        return
    row = db.fetch_one(INVALID_INDEX, (name,))
    if row and row[0]:
        db.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(*step.index)))


def _first_line(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
