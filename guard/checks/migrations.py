"""Migration history: Prisma's folders against `_prisma_migrations`, including files edited after applying.

The pending folders are also linted (guard/checks/migration_lint.py): what they would lock or break.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from guard.checks import CheckContext
from guard.checks.migration_lint import lint_kinds, lint_pending
from guard.db.database import Database
from guard.findings.finding import CheckResult, Finding, FindingSink, Severity
from guard.schema.history import (
    MigrationFile,
    MigrationRecord,
    folders_without_script,
    pending_migrations,
    read_history,
    read_migrations,
)

CHECK = "migrations"
KINDS = (
    "migrations_table_missing",
    "migration_pending",
    "migration_failed",
    "migration_edited",
    "migration_unknown",
    "migration_file_missing",
)


def run(ctx: CheckContext) -> CheckResult:
    """Compare the migration folders with the recorded history."""
    started = time.perf_counter()
    folder = ctx.settings.require_migrations_dir()
    files = read_migrations(folder)
    without_script = folders_without_script(folder)
    levels = ctx.settings.migration_lint
    with Database(ctx.settings.require_database_url()) as db:
        history = read_history(db)
        pending = pending_migrations(files, history)
        linted = lint_pending(pending, db, levels)
    sink = FindingSink(CHECK, ctx.limit, (*KINDS, *lint_kinds(levels)))
    pending_severity: Severity | None = "warn" if ctx.deploying else None
    assessed = assess(files, history, without_script, pending=pending_severity)
    for finding in [*missing_scripts(without_script), *assessed, *linted.findings]:
        sink.add(finding)
    info = {"folders": len(files), "applied_rows": sum(1 for r in history or () if r.applied)}
    if pending:
        info["linted"] = len(pending)
    if linted.silenced:
        info["lint_silenced"] = linted.silenced
    return sink.result(time.perf_counter() - started, info=info)


def missing_scripts(folders: list[Path]) -> list[Finding]:
    """Return one finding per migration folder that holds no migration.sql."""
    return [
        Finding(
            CHECK,
            "migration_file_missing",
            f"migration:{folder.name}",
            "folder has no migration.sql: Prisma counts it as a migration and `migrate deploy` stops "
            "(P3015); restore the file or delete the folder",
            path=str(folder),
        )
        for folder in folders
    ]


def assess(
    files: list[MigrationFile],
    history: list[MigrationRecord] | None,
    without_script: Sequence[Path] = (),
    *,
    pending: Severity | None = None,
) -> list[Finding]:
    """Return one finding per folder or row whose state is not 'applied, unchanged'.

    `pending` is the pending folders' severity: "warn" before a deploy that applies them.
    """
    if history is None:
        return [
            Finding(
                CHECK,
                "migrations_table_missing",
                "table:_prisma_migrations",
                f"no migration history: _prisma_migrations does not exist ({len(files)} "
                "folders unrecorded; see `guard migrations baseline`)",
            )
        ]
    live = [r for r in history if not r.rolled_back]  # rolled-back rows count as not applied
    folders = {f.name: f for f in files}
    found = [_failed(r) for r in live if r.failed]
    failed = {r.name for r in live if r.failed}
    for migration in files:
        rows = [r for r in live if r.name == migration.name and r.applied]
        if migration.name in failed:
            continue
        if not rows:
            found.append(
                Finding(
                    CHECK,
                    "migration_pending",
                    f"migration:{migration.name}",
                    "folder has no applied row in _prisma_migrations"
                    + ("; this deploy applies it" if pending == "warn" else ""),
                    path=str(migration.path),
                    severity=pending,
                )
            )
        elif not any(migration.matches(r.checksum) for r in rows):
            found.append(
                Finding(
                    CHECK,
                    "migration_edited",
                    f"migration:{migration.name}",
                    "migration.sql changed after it was applied (checksum differs)",
                    path=str(migration.path),
                    detail={"checksum_recorded": rows[-1].checksum, "checksum_file": migration.checksum},
                )
            )
    named = set(folders) | {folder.name for folder in without_script}
    unknown = sorted({r.name for r in live if r.applied and r.name not in named})
    found += [
        Finding(
            CHECK,
            "migration_unknown",
            f"migration:{name}",
            "applied in the database but no folder has this name",
        )
        for name in unknown
    ]
    return found


def _failed(record: MigrationRecord) -> Finding:
    logs = (record.logs or "").strip().splitlines()
    reason = f": {logs[0]}" if logs else ""
    return Finding(
        CHECK,
        "migration_failed",
        f"migration:{record.name}",
        f"started but never finished nor rolled back{reason}",
    )
