"""Which backups a keep-daily/weekly/monthly policy keeps, with restic's meaning, over plain values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

Bucketer = Callable[[datetime], int]


@dataclass(frozen=True)
class Policy:
    """Keep the newest backup of each of the last N days, ISO weeks and months that have backups."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 6

    def empty(self) -> bool:
        return self.daily == self.weekly == self.monthly == 0


def _day(t: datetime) -> int:
    return t.year * 10000 + t.month * 100 + t.day


def _week(t: datetime) -> int:
    year, week, _ = t.isocalendar()
    return year * 100 + week


def _month(t: datetime) -> int:
    return t.year * 100 + t.month


def keep(backups: Sequence[tuple[str, datetime]], now: datetime, policy: Policy) -> dict[str, list[str]]:
    """Return the kept ids with the reasons each is kept, as restic's `forget --keep-*` decides.

    Newest first, a rule keeps a backup when its bucket (day, ISO week or month) differs from the last
    bucket that rule kept, until the rule has kept N; a rule with room left also keeps the oldest
    backup (restic 0.16 and later). A backup dated after `now` (a skewed clock) is
    always kept and does not use up a rule.
    """
    rules: list[tuple[str, Bucketer, list[int], list[int | None]]] = [
        ("daily", _day, [policy.daily], [None]),
        ("weekly", _week, [policy.weekly], [None]),
        ("monthly", _month, [policy.monthly], [None]),
    ]
    kept: dict[str, list[str]] = {}
    ordered = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    for position, (backup_id, moment) in enumerate(ordered):
        if moment > now:
            kept[backup_id] = ["dated after now"]
            continue
        oldest = position == len(ordered) - 1
        for name, bucket, left, last in rules:
            value = bucket(moment)
            if left[0] <= 0:
                continue
            if value != last[0]:
                kept.setdefault(backup_id, []).append(name)
                last[0] = value
                left[0] -= 1
            elif oldest:  # restic >= 0.16 (restic/restic#4366): a rule with room left keeps the oldest
                kept.setdefault(backup_id, []).append(f"oldest {name}")
    return kept
