"""`guard drift adopt`: turn a deliberate live change into a Prisma migration recorded as applied.

The other way out of drift (prisma/prisma#20196): the SQL that turns the migrations' schema into the
live one is written as a new migration folder, named as `prisma migrate dev --create-only` names
one, and recorded the way `prisma migrate resolve --applied` records it, so it is history, not drift.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from guard.checks.drift import read_schemas
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import UsageError
from guard.plural import plural
from guard.schema.compare import Difference, compare
from guard.schema.history import (
    SCRIPT,
    MigrationFile,
    prisma_clock,
    read_history,
    read_migrations,
    record_applied,
)
from guard.schema.remedy import migration_script
from guard.schema.rescue import RepairRefused
from guard.schema.snapshot import Snapshot
from guard.schema.steps import ColumnTypes, Step, parse_script

LAST_STARTED = "SELECT max(started_at) FROM _prisma_migrations"
STAMP = "%Y%m%d%H%M%S"  # Prisma's migration folder prefix, in UTC
_NAME_CHARS = re.compile(r"[^a-z0-9]+")
MAX_WHAT = 60


@dataclass(frozen=True)
class AdoptionPlan:
    """The migration folder adopt would write, its SQL, and the live differences it records."""

    folder: Path
    sql: str
    differences: tuple[Difference, ...]  # as `guard check drift` reports them
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def destructive(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.destructive)

    def to_json(self) -> dict[str, object]:
        return {
            "migration": self.name,
            "path": str(self.folder / SCRIPT),
            "sql": self.sql,
            "adopts": [
                {"kind": d.kind, "subject": d.subject, "message": d.message} for d in self.differences
            ],
            "destructive": [s.number for s in self.destructive],
        }


def plan_adoption(
    settings: Settings, *, name: str | None = None, now: datetime | None = None
) -> AdoptionPlan:
    """Compare the live schema with the applied migrations and plan the migration that records the change."""
    folder = settings.require_migrations_dir()
    with Database(settings.require_database_url()) as live:
        history = read_history(live)
    if history is None:
        raise UsageError("no _prisma_migrations table: run `guard migrations baseline` before adopting drift")
    applied = {r.name for r in history if r.applied}
    waiting = [f.name for f in read_migrations(folder) if f.name not in applied]
    if waiting:
        raise UsageError(
            f"refusing to adopt: {plural(len(waiting), 'migration')} not applied ({waiting[0]}...); "
            "apply or resolve them first, so the adopted migration comes last"
        )
    schemas = read_schemas(settings)
    if schemas.expected is None or schemas.failure is not None:
        failure = schemas.failure
        why = f"migration {failure.migration} fails to replay ({failure.error})" if failure else "no schema"
        raise RepairRefused(f"refusing to adopt: {why}")
    invalid = [i.key for i in schemas.actual.indexes.values() if not i.valid]
    if invalid:
        raise RepairRefused(
            f"refusing to adopt invalid index {invalid[0]} (a failed concurrent build): "
            "rebuild or drop it first (`guard drift repair`)"
        )
    differences = tuple(compare(schemas.expected, schemas.actual))
    summary = "\n-- ".join(d.message for d in differences) or "no difference"
    # Reversed: what the migrations build is the starting point, the live schema the goal.
    reverse = compare(schemas.actual, schemas.expected)
    text = migration_script((d.statements for d in reverse), summary)
    steps = parse_script(text, snapshot_column_types(schemas.expected), "the adopted migration")
    stamp = _stamp(now or datetime.now(UTC), [f.name for f in read_migrations(folder)])
    what = name or _what(differences)
    return AdoptionPlan(folder / f"{stamp}_guard_adopt_{_slug(what)}", text, differences, steps)


def snapshot_column_types(snapshot: Snapshot) -> ColumnTypes:
    """Look up column types in a snapshot: what the adopted migration meets where it is deployed next."""

    def lookup(schema: str | None, table: str, column: str) -> str | None:
        key = table if schema in (None, "public") else f"{schema}.{table}"
        found = snapshot.tables.get(key)
        col = found.column_map().get(column) if found is not None else None
        return col.type if col is not None else None

    return lookup


def adopt(settings: Settings, plan: AdoptionPlan, *, allow_destructive: bool = False) -> MigrationFile:
    """Write the migration folder and record it as applied, as `migrate resolve --applied` would."""
    if not plan.differences:
        raise UsageError("nothing to adopt: the live schema matches the migrations")
    if plan.destructive and not allow_destructive:
        raise RepairRefused(
            f"refusing to adopt: the migration would drop data where it is deployed next "
            f"({plan.destructive[0].destructive}); pass --allow-destructive",
            plan.destructive,
        )
    plan.folder.mkdir()  # FileExistsError cannot happen twice in a second: the stamp is after the last
    try:
        script = plan.folder / SCRIPT
        script.write_bytes(plan.sql.encode("utf-8"))
        migration = MigrationFile(plan.name, script, script.read_bytes())
        with Database(settings.require_database_url()) as db, db.transaction():
            row = db.fetch_one(LAST_STARTED)
            record_applied(db, migration, prisma_clock(after=row[0] if row else None))
    except BaseException:
        shutil.rmtree(plan.folder, ignore_errors=True)
        raise
    return migration


def _stamp(now: datetime, existing: list[str]) -> str:
    """Name the moment as Prisma does, later than every existing folder's, so the new one sorts last."""
    stamp = now.astimezone(UTC).strftime(STAMP)
    latest = max((n[:14] for n in existing if n[:14].isdigit()), default="")
    if stamp <= latest:
        later = datetime.strptime(latest, STAMP).replace(tzinfo=UTC).timestamp() + 1
        stamp = datetime.fromtimestamp(later, UTC).strftime(STAMP)
    return stamp


def _what(differences: tuple[Difference, ...]) -> str:
    if not differences:
        return "nothing"
    first = differences[0].subject.split(":", 1)[-1]
    return first if len(differences) == 1 else f"{first}_and_{len(differences) - 1}_more"


def _slug(text: str) -> str:
    """Spell a name as Prisma's `--name` becomes a folder suffix: lower case, words joined by `_`."""
    return _NAME_CHARS.sub("_", text.lower()).strip("_")[:MAX_WHAT].rstrip("_") or "drift"
