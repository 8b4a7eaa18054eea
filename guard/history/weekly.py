"""The write-up's five weekly numbers, per ISO week (Monday 00:00 UTC to the next), against their targets.

Each number is a count over rows guard keeps (README: `guard report`). A week without the rows a
number needs has no value for it ("no data"): never a pass, never a miss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from guard.config.settings import Settings
from guard.db.database import Database, load_query
from guard.history import events
from guard.history.accesslog import AccessTally

DRIFT = "schema_drift_incidents"
AD_404 = "ad_404_ratio"
MISSING_IMAGES = "missing_image_ratio"
BACKUPS = "backup_success_rate"
PREDEPLOY = "predeploy_pass_rate"
NAMES = (DRIFT, AD_404, MISSING_IMAGES, BACKUPS, PREDEPLOY)
LABELS = {
    DRIFT: "schema drift incidents",
    AD_404: "404s on ad pages",
    MISSING_IMAGES: "missing image ratio",
    BACKUPS: "backup success rate",
    PREDEPLOY: "pre-deploy pass rate",
}
TARGETS = {DRIFT: "0", AD_404: "< 0.1%", MISSING_IMAGES: "< 0.5%", BACKUPS: "100%", PREDEPLOY: "> 95%"}
MET, MISSED, NO_DATA = "met", "missed", "no data"
SLUGS, ACCESS_LOG = "slugs", "access_log"  # how the 404s were counted
WEEK = timedelta(days=7)
NOW = "SELECT now()"


@dataclass(frozen=True)
class Number:
    """One number of one week: the counts it is made of, and whether it meets its target."""

    name: str
    numerator: int | None  # drift: incidents; the rest: the rows counted (None: no data)
    denominator: int | None  # None for drift (a count, not a ratio)
    status: str
    method: str | None = None  # 404s only: slugs or access_log

    @property
    def value(self) -> float | None:
        """The count (drift) or the ratio, None without data."""
        if self.numerator is None:
            return None
        if self.denominator is None:
            return float(self.numerator)
        return self.numerator / self.denominator if self.denominator else None

    def shown(self) -> str:
        """The value as a person reads it: '0', '0.07%', 'no data'."""
        value = self.value
        if value is None:
            return NO_DATA
        if self.denominator is None:
            return str(self.numerator)
        return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": LABELS[self.name],
            "target": TARGETS[self.name],
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "status": self.status,
        }
        if self.method is not None:
            data["method"] = self.method
        return data


@dataclass(frozen=True)
class Week:
    """One ISO week's five numbers; `complete` is false for the week still running."""

    start: datetime
    numbers: tuple[Number, ...]
    complete: bool

    @property
    def end(self) -> datetime:
        return self.start + WEEK

    @property
    def label(self) -> str:
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    def number(self, name: str) -> Number:
        return next(n for n in self.numbers if n.name == name)

    @property
    def misses(self) -> list[str]:
        return [n.name for n in self.numbers if n.status == MISSED]

    def to_json(self) -> dict[str, Any]:
        return {
            "week": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "complete": self.complete,
            "numbers": {n.name: n.to_json() for n in self.numbers},
            "misses": self.misses,
        }


def week_start(moment: datetime) -> datetime:
    """Return the Monday 00:00 UTC that starts the ISO week holding this moment."""
    day = moment.astimezone(UTC).date()
    monday = day - timedelta(days=day.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def week_starts(weeks: int, now: datetime) -> list[datetime]:
    """The starts of the last `weeks` ISO weeks, oldest first; the last holds now."""
    current = week_start(now)
    return [current - WEEK * n for n in range(weeks - 1, -1, -1)]


def expects_daily_backups(settings: Settings) -> bool:
    """Whether beat takes a backup every day (BACKUP_DIR set, BACKUP_CRON's day fields all `*`)."""
    fields = settings.backup_cron.split()
    return settings.backup_dir is not None and len(fields) == 5 and fields[2:] == ["*", "*", "*"]


def weekly_numbers(
    db: Database,
    weeks: int,
    *,
    now: datetime | None = None,
    access: AccessTally | None = None,
    daily_backups: bool = False,
) -> list[Week]:
    """Return the five numbers of each of the last `weeks` ISO weeks, oldest first (this week last).

    `access`: real requests counted from the app's access log; the 404s then come from it, not from
    the daily snapshots of slugs. `now` defaults to the database's clock, the one history is kept in.
    `daily_backups`: a day (after the first backup, before today) with no backup event at all counts
    as a failed backup, so backups that never ran cannot keep the rate at 100%.
    """
    if weeks < 1:
        raise ValueError("weeks must be 1 or more")
    if now is None:
        row = db.fetch_one(NOW)
        now = row[0] if row else datetime.now(UTC)
    starts = week_starts(weeks, now)
    since, until = starts[0], starts[-1] + WEEK
    window = {
        "since": since,
        "until": until,
        "since_day": since.date(),
        "until_day": until.date(),
        "today": now.date(),
    }
    facts = _Facts.read(db, window, daily_backups)
    return [Week(start, _numbers(facts, start, access), start + WEEK <= now) for start in starts]


@dataclass
class _Facts:
    """What the window's rows add up to, by week start (a naive UTC timestamp from date_trunc)."""

    events: dict[tuple[date, str, str], int]
    drift: dict[date, tuple[int, int]]
    daily: dict[date, tuple[int, int, int, int, int, int]]
    missed_backups: dict[date, int]

    @classmethod
    def read(cls, db: Database, window: dict[str, Any], daily_backups: bool) -> _Facts:
        found = cls({}, {}, {}, {})
        if daily_backups:
            for week, missed in db.fetch_all(load_query("history_weekly_backup_days"), window):
                found.missed_backups[week.date()] = int(missed)
        for week, kind, outcome, count in db.fetch_all(load_query("history_weekly_events"), window):
            found.events[(week.date(), str(kind), str(outcome))] = int(count)
        for week, opened, ran in db.fetch_all(load_query("history_weekly_drift"), window):
            found.drift[week.date()] = (int(opened), int(ran))
        for week, *sums in db.fetch_all(load_query("history_weekly_daily"), window):
            found.daily[week.date()] = (sums[0], sums[1], sums[2], sums[3], sums[4], sums[5])
        return found

    def outcomes(self, week: date, kind: str) -> dict[str, int]:
        return {o: n for (w, k, o), n in self.events.items() if w == week and k == kind}


def _numbers(facts: _Facts, start: datetime, access: AccessTally | None) -> tuple[Number, ...]:
    week = start.date()
    opened, ran = facts.drift.get(week, (0, 0))
    drift = Number(DRIFT, opened if (opened or ran) else None, None, _drift_status(opened, ran))
    ad_days, ads, bad, image_days, images, missing = facts.daily.get(week, (0, 0, 0, 0, 0, 0))
    if access is not None:
        requests, not_found = access.weeks.get(week, (0, 0))
        ad_404 = _ratio(AD_404, not_found, requests, lambda n, d: 1000 * n < d, ACCESS_LOG)
    else:
        ad_404 = _ratio(AD_404, bad, ads if ad_days else 0, lambda n, d: 1000 * n < d, SLUGS)
    images_number = _ratio(MISSING_IMAGES, missing, images if image_days else 0, lambda n, d: 200 * n < d)
    backups = facts.outcomes(week, events.BACKUP)
    expected = sum(backups.values()) + facts.missed_backups.get(week, 0)
    backup_number = _ratio(BACKUPS, backups.get(events.OK, 0), expected, lambda n, d: n == d)
    runs = facts.outcomes(week, events.PREDEPLOY)
    passed = runs.get(events.PASS, 0) + runs.get(events.WARN, 0)
    predeploy = _ratio(PREDEPLOY, passed, sum(runs.values()), lambda n, d: 100 * n > 95 * d)
    return (drift, ad_404, images_number, backup_number, predeploy)


def _drift_status(opened: int, ran: int) -> str:
    if opened:
        return MISSED
    return MET if ran else NO_DATA


def _ratio(
    name: str, numerator: int, denominator: int, meets: Callable[[int, int], bool], method: str | None = None
) -> Number:
    """A ratio's number: no denominator is no data; otherwise the exact integer test of its target."""
    if denominator <= 0:
        return Number(name, None, 0, NO_DATA, method)
    status = MET if meets(numerator, denominator) else MISSED
    return Number(name, numerator, denominator, status, method)


def current(weeks: Sequence[Week]) -> Week:
    """The week holding now (the last one)."""
    return weeks[-1]
