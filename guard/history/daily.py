"""The daily snapshot of the counts the weekly ratios need: ads, ads whose page 404s, images, missing images.

The definitions are the checks' own, never a second copy: an ad whose `/ad/<slug>` cannot resolve is
an ads row the integrity check flags under an enabled `ads.slug` rule of type required (NULL or
blank), format (malformed) or unique (shared: the route finds another ad, or none); a missing image is
a row the files check reports as `missing_file`, out of the rows that store a path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg import sql

from guard.checks import CheckContext, files, integrity
from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.db.database import Database, Row, load_query
from guard.errors import GuardError
from guard.findings.finding import CheckResult, Finding

log = logging.getLogger("guard.history")

AD_TABLE = "ads"
SLUG_COLUMN = "slug"
SLUG_RULE_TYPES = ("required", "format", "unique")
TODAY_FILLED = """
SELECT ads IS NOT NULL AND ads_unresolvable IS NOT NULL,
       image_rows IS NOT NULL AND image_rows_missing IS NOT NULL
FROM guard.history_daily WHERE day = (now() AT TIME ZONE 'UTC')::date
"""
TODAY = (
    "SELECT day, ads, ads_unresolvable, image_rows, image_rows_missing, taken_at "
    "FROM guard.history_daily WHERE day = (now() AT TIME ZONE 'UTC')::date"
)
SNAPSHOTS = (
    "SELECT day, ads, ads_unresolvable, image_rows, image_rows_missing, taken_at "
    "FROM guard.history_daily WHERE day >= %s AND day < %s ORDER BY day"
)


@dataclass(frozen=True)
class Snapshot:
    """One day's counts; a None is a half nobody took that day (no data, never zero)."""

    day: date
    ads: int | None
    ads_unresolvable: int | None
    image_rows: int | None
    image_rows_missing: int | None
    taken_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> Snapshot:
        return cls(*row)


def slug_rules(settings: Settings) -> list[Rule]:
    """Return the enabled rules that decide whether an ad's page resolves."""
    return [
        r
        for r in settings.rules
        if r.table == AD_TABLE and r.column == SLUG_COLUMN and r.type in SLUG_RULE_TYPES
    ]


def unresolvable(findings: Iterable[Finding], rules: Iterable[Rule]) -> int:
    """Count the ads (not the findings: one row may break two rules) the slug rules flag."""
    ids = {r.id for r in rules}
    return len({f.subject for f in findings if f.check == integrity.CHECK and f.kind in ids})


def count_ads(db: Database) -> int:
    row = db.fetch_one(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(AD_TABLE)))
    return int(row[0]) if row else 0


def record_ads(db: Database, ads: int, bad: int, *, overwrite: bool) -> None:
    db.execute(load_query("history_daily_ads"), {"ads": ads, "bad": bad, "overwrite": overwrite})


def record_images(db: Database, rows: int, missing: int, *, overwrite: bool) -> None:
    db.execute(load_query("history_daily_images"), {"rows": rows, "missing": missing, "overwrite": overwrite})


def image_counts(result: CheckResult) -> tuple[int, int]:
    """Return (rows storing a path, rows whose file is missing) from a whole files check."""
    return int(result.info.get("rows", 0)), int(result.counts.get("missing_file", 0))


def take(settings: Settings) -> Snapshot:
    """Take today's snapshot now (beat's daily task): the slug rules and the files check, then store both.

    Without slug rules (all disabled) the ad half stays empty: no rule, no data, never a fake zero.
    """
    rules = slug_rules(settings)
    bad: int | None = None
    if rules:
        ctx = CheckContext(settings.replace(rules=tuple(rules)), limit=None)
        bad = unresolvable(integrity.run(ctx).findings, rules)
    with Database(settings.require_database_url(), application_name="guard-history") as db:
        if bad is not None:  # stored first (autocommit): an uploads problem below never loses it
            record_ads(db, count_ads(db), bad, overwrite=True)
        # Without UPLOADS_ROOT there is no files check, so no image half (no data, never a fake zero).
        if settings.uploads_root is not None:
            images = files.run(CheckContext(settings, limit=0))
            if images.error is not None:
                raise GuardError(images.error)
            record_images(db, *image_counts(images), overwrite=True)
        today = db.fetch_one(TODAY)
    if today is None:
        raise GuardError("today's snapshot was not stored")
    return Snapshot.from_row(today)


def fill_from_sweep(settings: Settings, result: CheckResult) -> None:
    """Fill today's half of the snapshot from a whole sweep when beat has not taken it yet.

    Never fails the sweep: a snapshot that cannot be stored is a warning.
    """
    if result.name not in (integrity.CHECK, files.CHECK) or result.error is not None:
        return
    try:
        with Database(settings.require_database_url(), application_name="guard-history") as db:
            filled = db.fetch_one(TODAY_FILLED)
            if result.name == integrity.CHECK and not (filled and filled[0]):
                rules = slug_rules(settings)
                if rules:
                    record_ads(db, count_ads(db), unresolvable(result.findings, rules), overwrite=False)
            elif result.name == files.CHECK and not (filled and filled[1]):
                record_images(db, *image_counts(result), overwrite=False)
    except (GuardError, psycopg.Error) as exc:
        log.warning("guard: history: today's %s counts not recorded: %s", result.name, type(exc).__name__)


def snapshots(db: Database, since: date, until: date) -> list[Snapshot]:
    """Return the snapshots of days in [since, until), oldest first."""
    return [Snapshot.from_row(r) for r in db.fetch_all(SNAPSHOTS, (since, until))]


def upkeep(settings: Settings) -> tuple[Snapshot, int, int]:
    """Beat's daily history task: take today's snapshot, then forget history older than HISTORY_DAYS.

    Returns the snapshot and how many events and days were forgotten.
    """
    from guard.history.events import forget  # events is imported by the backups; keep this one light

    try:
        snapshot = take(settings)
    finally:  # history is forgotten on time even on a day the snapshot fails
        with Database(settings.require_database_url(), application_name="guard-history") as db:
            events_gone, days_gone = forget(db, settings.history_days)
    return snapshot, events_gone, days_gone
