"""The write-up's emergency procedure as one run: plan the repair, back up, apply it online, check again."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from guard.backup.builder import run_backup
from guard.checks.drift import DriftReport, detect
from guard.config.settings import Settings
from guard.continuous.capture import install, installed_version, missing_capture
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, ConfigError, GuardError, UsageError
from guard.findings.finding import Finding
from guard.plural import plural
from guard.progress import ProgressFactory, no_progress
from guard.repair.journal import Change, record_run
from guard.schema.applier import DEFAULT_POLICY, Application, LockPolicy, RetryNotice, apply_steps
from guard.schema.history import baseline, folders_without_script, read_history, read_migrations
from guard.schema.model import ident
from guard.schema.remedy import script
from guard.schema.steps import ColumnTypes, Step, parse_script

COLUMN_TYPE = (
    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
    " WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped"
)
NO_BACKUP_DIR = "refusing to repair without a backup: BACKUP_DIR is not set (set it, or pass --no-backup)"


class RepairRefused(GuardError):
    """A repair guard will not run as planned (statements that drop data, a schema it cannot compare)."""

    exit_code = EXIT_FINDINGS

    def __init__(self, message: str, steps: tuple[Step, ...] = ()) -> None:
        super().__init__(message)
        self.steps = steps


@dataclass(frozen=True)
class RepairPlan:
    """The statements a repair would run, where they came from and whether a backup comes first."""

    source: str  # "drift" (the repair script guard builds) or the operator's script file
    steps: tuple[Step, ...]
    backup: bool
    findings: tuple[Finding, ...] = ()  # the drift being repaired, when the script is guard's

    @property
    def statements(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.setting is None)

    @property
    def destructive(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.destructive)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": not self.statements and not self.findings,
            "applied": False,
            "source": self.source,
            "backup": self.backup,
            "steps": [s.to_json() for s in self.steps],
            "destructive": [s.number for s in self.destructive],
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True)
class Aftercare:
    """What a clean repair put back besides the schema: Prisma's history, guard's capture triggers."""

    baselined: int = 0  # migrations recorded as applied in a re-created `_prisma_migrations`
    reinstalled: tuple[str, ...] = ()  # tables whose capture triggers were installed again
    note: str | None = None  # why the history was left alone, when it was

    def to_json(self) -> dict[str, object]:
        return {"baselined": self.baselined, "reinstalled": list(self.reinstalled), "note": self.note}


@dataclass(frozen=True)
class RepairResult:
    """What an applied repair did: its backup, each statement with its timing, and the drift check after."""

    backup_id: str | None
    application: Application
    drift: DriftReport = field(repr=False)
    run_id: str | None = None
    aftercare: Aftercare | None = None

    @property
    def remaining(self) -> list[Finding]:
        return self.drift.findings()

    @property
    def ok(self) -> bool:
        return self.application.failure is None and not self.remaining

    def to_json(self) -> dict[str, object]:
        failure = self.application.failure
        return {
            "ok": self.ok,
            "applied": True,
            "repair_id": self.run_id,
            "backup": self.backup_id,
            "statements": [s.to_json() for s in self.application.applied],
            "failure": failure.to_json() if failure is not None else None,
            "drift": {"ok": not self.remaining, "findings": [f.to_json() for f in self.remaining]},
            "aftercare": self.aftercare.to_json() if self.aftercare is not None else None,
        }


def plan_repair(
    settings: Settings,
    *,
    script_file: Path | None = None,
    backup: bool = True,
    progress: ProgressFactory = no_progress,
) -> RepairPlan:
    """Build the plan from guard's own repair script, or from the operator's edited one; change nothing."""
    findings: tuple[Finding, ...] = ()
    if script_file is None:
        report = detect(settings, progress=progress)
        if report.failure is not None:
            raise RepairRefused(
                f"refusing to repair: migration {report.failure.migration} fails to replay "
                f"({report.failure.error}), so the schemas were not compared"
            )
        text, source = script(d.statements for d in report.differences), "drift"
        findings = tuple(report.findings())
    else:
        text, source = read_script(script_file), str(script_file)
    with Database(settings.require_database_url()) as live:
        steps = parse_script(text, live_column_types(live), source)
    return RepairPlan(source, steps, backup, findings)


def read_script(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def live_column_types(live: Database) -> ColumnTypes:
    """Look up a column's current type in the live catalog (unqualified names follow its search_path)."""

    def lookup(schema: str | None, table: str, column: str) -> str | None:
        name = ident(schema, table) if schema else ident(table)
        row = live.fetch_one(COLUMN_TYPE, (name, column))
        return str(row[0]) if row and row[0] is not None else None

    return lookup


def refuse_destructive(plan: RepairPlan) -> None:
    """Refuse a plan with statements that drop data (listing them) unless the operator allowed it."""
    if plan.destructive:
        count = plural(len(plan.destructive), "statement")
        raise RepairRefused(
            f"refusing to repair: {count} would drop data (pass --allow-destructive, or edit the "
            "script and use --script)",
            plan.destructive,
        )


def run_repair(
    settings: Settings,
    plan: RepairPlan,
    *,
    policy: LockPolicy = DEFAULT_POLICY,
    allow_destructive: bool = False,
    on_retry: RetryNotice | None = None,
    progress: ProgressFactory = no_progress,
) -> RepairResult:
    """Back up (unless the plan says not to), apply every step online, then run the drift check again."""
    if plan.backup and settings.backup_dir is None:
        raise ConfigError(NO_BACKUP_DIR)
    if not allow_destructive:
        refuse_destructive(plan)
    backup_id = None
    if plan.backup and plan.statements:
        backup_id = run_backup(settings, progress).id
    with Database(settings.require_database_url(), application_name="guard-drift-repair") as db:
        application = apply_steps(db, plan.steps, policy, on_retry)
        run_id = _record(db, plan, backup_id, application)
    drift = detect(settings, progress=progress)
    aftercare = None
    if application.failure is None and not drift.findings():
        with Database(settings.require_database_url(), application_name="guard-drift-repair") as db:
            aftercare = _aftercare(db, settings)
    return RepairResult(backup_id, application, drift, run_id, aftercare)


def _aftercare(db: Database, settings: Settings) -> Aftercare:
    """After a restore the schema is not all that went: put back the history and guard's triggers.

    Only once the schema matches the migrations, so recording them as applied tells the truth (what
    `guard migrations baseline` does), and only where guard was installed (its schema is there).
    """
    baselined, note = 0, None
    if read_history(db) is None:
        folder = settings.require_migrations_dir()
        if folders_without_script(folder):
            note = "history not recorded: a migration folder has no migration.sql (guard check migrations)"
        else:
            baselined = baseline(db, read_migrations(folder))
    reinstalled: tuple[str, ...] = ()
    if installed_version(db) is not None and missing_capture(db, settings):
        reinstalled = tuple(t.name for t in install(db, settings))
    return Aftercare(baselined, reinstalled, note)


def _record(db: Database, plan: RepairPlan, backup_id: str | None, application: Application) -> str | None:
    """Record the statements that ran in the repair ledger (DDL is undone by restoring the backup)."""
    if not application.applied:
        return None
    changes = [Change(f"statement:{s.number}", None, s.sql) for s in application.applied]
    failure = application.failure
    detail = {"source": plan.source, "failed_step": failure.number if failure is not None else None}
    return record_run(db, "drift", backup_id, changes, undoable=False, detail=detail)
