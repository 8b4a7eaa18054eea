"""The judgements behind `guard status` and pipeline_stalled: pure functions over times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from guard.continuous.canary import judge_stall
from guard.continuous.liveness import Heartbeat, judge

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_canary_waiting_past_the_threshold_with_nothing_through_is_a_stall() -> None:
    stall = judge_stall(last_seen=ago(400), waiting_since=ago(301), now=NOW, stall_seconds=300)
    assert stall.stalled and stall.quiet_seconds == 400


def test_no_canary_waiting_is_no_stall_however_old_the_last_one() -> None:
    # beat is down: nothing was sent, so nothing is late (guard status says beat is missing instead)
    assert not judge_stall(last_seen=ago(9000), waiting_since=None, now=NOW, stall_seconds=300).stalled


def test_a_young_canary_is_not_late_yet() -> None:
    assert not judge_stall(last_seen=ago(9000), waiting_since=ago(10), now=NOW, stall_seconds=300).stalled


def test_a_slow_pipeline_that_still_delivers_is_not_stalled() -> None:
    stall = judge_stall(last_seen=ago(20), waiting_since=ago(350), now=NOW, stall_seconds=300)
    assert not stall.stalled


def test_the_first_canary_never_arriving_is_a_stall() -> None:
    stall = judge_stall(last_seen=None, waiting_since=ago(300), now=NOW, stall_seconds=300)
    assert stall.stalled and stall.quiet_seconds == 300
    assert "none has come through yet" in stall.finding(300).message


def beat(process: str, instance: str, age: float) -> Heartbeat:
    return Heartbeat(process, instance, "host", 1, ago(age))


def test_heartbeats_are_alive_stale_or_missing() -> None:
    states = judge(
        [beat("worker", "w2@h", 40), beat("worker", "w1@h", 2), beat("listener", "h", 15)],
        NOW,
        stale_seconds=15,
        expected=("listener", "worker", "beat"),
    )
    assert [(s.process, s.instance, s.state) for s in states] == [
        ("listener", "h", "alive"),  # exactly at the threshold: still alive
        ("worker", "w1@h", "alive"),
        ("worker", "w2@h", "stale"),
        ("beat", None, "missing"),
    ]
    assert [s.ok for s in states] == [True, True, False, False]


def test_a_clock_ahead_of_the_server_is_age_zero() -> None:
    [state] = judge([beat("beat", "h", -3)], NOW, stale_seconds=15, expected=())
    assert state.age_seconds == 0 and state.ok


def test_a_long_stale_instance_with_a_living_one_of_its_kind_is_replaced_not_a_problem() -> None:
    # A worker container recreated under a new name: its old row stays until beat's prune a day later.
    states = judge(
        [beat("worker", "old@a", 601), beat("worker", "new@b", 1), beat("listener", "old", 601)],
        NOW,
        stale_seconds=15,
        expected=("listener", "worker"),
    )
    assert [(s.process, s.instance, s.state, s.problem) for s in states] == [
        ("listener", "old", "stale", True),  # no living listener: still a problem, however old
        ("worker", "new@b", "alive", False),
        ("worker", "old@a", "replaced", False),
    ]
    assert not [s for s in states if s.instance == "old@a"][0].ok  # never shown alive
    [recent] = [
        s for s in judge([beat("worker", "a", 100), beat("worker", "b", 1)], NOW, 15, ()) if s.instance == "a"
    ]
    assert recent.state == "stale" and recent.problem  # stale for less than ten minutes: still said
