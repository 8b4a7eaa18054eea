"""The watchers' retry policy: transient trouble is retried, anything else is not, a stop ends a wait."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from tenacity import wait_fixed

from watchers.lifecycle import StopFlag, retrying

log = logging.getLogger("test.lifecycle")
LONG_WAIT_S = 3600  # a wait no test outlives: only the stop flag can end it


def test_a_stop_interrupts_a_backoff_wait_and_gives_up_quietly() -> None:
    stop = StopFlag()
    attempted = threading.Event()
    outcome: list[object] = []

    def unreachable() -> str:
        attempted.set()
        raise psycopg.OperationalError("connection refused")

    policy = retrying(stop, log, "cannot connect").copy(wait=wait_fixed(LONG_WAIT_S))
    thread = threading.Thread(target=lambda: outcome.append(policy(unreachable)), daemon=True)
    thread.start()
    assert attempted.wait(10)
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "the stop flag did not end the backoff wait"
    assert outcome == [None]


def test_transient_trouble_is_retried_until_it_works() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.OperationalError("server closed the connection")
        return "connected"

    assert retrying(StopFlag(), log, "cannot connect").copy(wait=wait_fixed(0))(flaky) == "connected"
    assert len(calls) == 3


def test_a_bug_is_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        retrying(StopFlag(), log, "cannot connect").copy(wait=wait_fixed(0))(broken)
    assert len(calls) == 1
