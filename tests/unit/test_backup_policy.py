"""Prune's keep-daily/weekly/monthly over a made-up calendar, with restic's meaning."""

from __future__ import annotations

from datetime import datetime, timedelta

from guard.backup.policy import Policy, keep

NOW = datetime(2024, 6, 30, 23, 0)


def nightly(days: int, hour: int = 2) -> list[tuple[str, datetime]]:
    """One backup a night for `days` nights up to NOW, named by date."""
    start = NOW.replace(hour=hour) - timedelta(days=days - 1)
    return [
        ((start + timedelta(days=i)).strftime("%Y-%m-%d"), start + timedelta(days=i)) for i in range(days)
    ]


def test_keep_daily_keeps_the_newest_of_each_of_the_last_n_days() -> None:
    calendar = nightly(10)
    calendar.append(("2024-06-30-late", NOW.replace(hour=22)))
    kept = keep(calendar, NOW, Policy(daily=3, weekly=0, monthly=0))
    assert sorted(kept) == ["2024-06-28", "2024-06-29", "2024-06-30-late"]


def test_days_without_backups_do_not_use_up_the_daily_count() -> None:
    calendar = [
        ("a", datetime(2024, 6, 1, 2)),
        ("b", datetime(2024, 6, 10, 2)),
        ("c", datetime(2024, 6, 20, 2)),
    ]
    assert sorted(keep(calendar, NOW, Policy(daily=2, weekly=0, monthly=0))) == ["b", "c"]


def test_weekly_uses_iso_weeks_and_keeps_each_weeks_newest() -> None:
    calendar = nightly(21)  # 2024-06-10 (Monday) .. 2024-06-30 (Sunday): three ISO weeks
    kept = keep(calendar, NOW, Policy(daily=0, weekly=2, monthly=0))
    assert sorted(kept) == ["2024-06-23", "2024-06-30"]


def test_monthly_keeps_the_last_backup_of_each_month_and_reasons_add_up() -> None:
    calendar = nightly(120)
    kept = keep(calendar, NOW, Policy(daily=2, weekly=1, monthly=3))
    assert kept["2024-06-30"] == ["daily", "weekly", "monthly"]
    assert kept["2024-06-29"] == ["daily"]
    assert kept["2024-05-31"] == ["monthly"]
    assert kept["2024-04-30"] == ["monthly"]
    assert len(kept) == 4


def test_a_rule_with_room_left_keeps_the_oldest_backup_like_restic_0_16() -> None:
    calendar = [("old", datetime(2024, 6, 30, 1)), ("new", datetime(2024, 6, 30, 3))]
    kept = keep(calendar, NOW, Policy(daily=7, weekly=0, monthly=0))
    assert kept == {"new": ["daily"], "old": ["oldest daily"]}


def test_a_backup_dated_after_now_is_kept_and_uses_no_rule() -> None:
    calendar = [*nightly(3), ("future", NOW + timedelta(days=1))]
    kept = keep(calendar, NOW, Policy(daily=1, weekly=0, monthly=0))
    assert kept == {"future": ["dated after now"], "2024-06-30": ["daily"]}


def test_zero_counts_keep_nothing_by_policy() -> None:
    assert keep(nightly(5), NOW, Policy(0, 0, 0)) == {}
