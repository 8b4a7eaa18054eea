"""Drift: replay the applied migrations into a shadow database and compare every object with the live one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from guard.checks import CheckContext
from guard.config.settings import Settings
from guard.db.database import Database
from guard.db.scratch import drop_stale
from guard.findings.finding import CheckResult, Finding, FindingSink
from guard.progress import ProgressFactory, no_progress
from guard.schema.compare import Difference, compare
from guard.schema.history import (
    MigrationFile,
    ReplayFailure,
    applied_migrations,
    read_history,
    read_migrations,
    replay,
)
from guard.schema.shadow import create_schema, shadow_database
from guard.schema.snapshot import Snapshot, read_snapshot

CHECK = "drift"
KINDS = (
    "table_missing",
    "table_extra",
    "column_missing",
    "column_extra",
    "column_changed",
    "index_missing",
    "index_extra",
    "index_changed",
    "index_renamed",
    "index_invalid",
    "constraint_missing",
    "constraint_extra",
    "constraint_changed",
    "constraint_renamed",
    "object_missing",
    "object_extra",
    "object_changed",
    "migration_replay_failed",
)


@dataclass(frozen=True)
class DriftReport:
    """What replaying the migrations and comparing the schemas found."""

    replayed: tuple[str, ...]
    differences: tuple[Difference, ...]
    failure: ReplayFailure | None = None
    swept: tuple[str, ...] = ()

    def findings(self) -> list[Finding]:
        found = [to_finding(d) for d in self.differences]
        if self.failure is not None:
            name, error = self.failure.migration, self.failure.error
            found.append(
                Finding(
                    CHECK,
                    "migration_replay_failed",
                    f"migration:{name}",
                    f"migration {name} fails to replay: {error} (schemas not compared)",
                    detail={"error": error},
                )
            )
        return found


def run(ctx: CheckContext) -> CheckResult:
    """Run the drift check with exact counts and capped examples."""
    started = time.perf_counter()
    report = detect(ctx.settings, progress=ctx.progress)
    sink = FindingSink(CHECK, ctx.limit, KINDS)
    for finding in report.findings():
        sink.add(finding)
    info = {
        "migrations_replayed": len(report.replayed),
        "shadow": "SHADOW_DATABASE_URL" if ctx.settings.shadow_database_url else "temporary",
        "leftovers_dropped": len(report.swept),
    }
    return sink.result(time.perf_counter() - started, info)


@dataclass(frozen=True)
class Schemas:
    """The schema the applied migrations build (None when one failed to replay) and the live one."""

    replayed: tuple[str, ...]
    expected: Snapshot | None
    actual: Snapshot
    failure: ReplayFailure | None = None
    swept: tuple[str, ...] = ()


def detect(
    settings: Settings, *, replay_all: bool = False, progress: ProgressFactory = no_progress
) -> DriftReport:
    """Replay the applied migrations (or every folder) into a shadow and compare it with the live schema."""
    schemas = read_schemas(settings, replay_all=replay_all, progress=progress)
    if schemas.expected is None:
        return DriftReport(schemas.replayed, (), schemas.failure, schemas.swept)
    differences = tuple(compare(schemas.expected, schemas.actual))
    return DriftReport(schemas.replayed, differences, swept=schemas.swept)


def read_schemas(
    settings: Settings, *, replay_all: bool = False, progress: ProgressFactory = no_progress
) -> Schemas:
    """Read the live schema, and the one the applied migrations (or every folder) build in a shadow."""
    files = read_migrations(settings.require_migrations_dir())
    url = settings.require_database_url()
    with Database(url) as live:
        wanted = files if replay_all else applied_migrations(files, read_history(live))
        actual = read_snapshot(live)
        target = _target_schema(live)
        swept = tuple(drop_stale(live, settings.swept_prefixes()))
    with shadow_database(url, settings.shadow_url(), settings.shadow_database_prefix) as shadow:
        if target is not None:
            create_schema(shadow, target)
        failure = _replay(shadow, wanted, progress)
        expected = read_snapshot(shadow) if failure is None else None
    return Schemas(tuple(m.name for m in wanted), expected, actual, failure, swept)


def _target_schema(live: Database) -> str | None:
    """Name the schema the app's migrations create objects in (`?schema=NAME` sets it as search_path)."""
    row = live.fetch_one("SELECT current_schema()")
    return str(row[0]) if row and row[0] is not None else None


def _replay(shadow: Database, files: list[MigrationFile], progress: ProgressFactory) -> ReplayFailure | None:
    bar = progress("replay", len(files))
    try:
        return replay(shadow, files, bar.advance)
    finally:
        bar.close()


def to_finding(diff: Difference) -> Finding:
    """Turn a difference into a finding carrying its object type and repair SQL."""
    return Finding(
        CHECK,
        diff.kind,
        diff.subject,
        diff.message,
        detail={"object_type": diff.object_type, "sql": diff.sql},
    )
