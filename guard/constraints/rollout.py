"""The Prisma migrations that roll rules out as constraints without blocking the app's writes.

Three steps, each a folder named as `prisma migrate dev --create-only` names one:
1. `<ts>_guard_constraints_not_valid`: CHECK and FOREIGN KEY constraints added NOT VALID, so new
   writes are checked at once and the existing rows are not read under the ACCESS EXCLUSIVE lock
   (bounded by lock_timeout, which the file resets at its end);
2. `<ts>_guard_unique_<table>_<column>`: one CREATE UNIQUE INDEX CONCURRENTLY per folder, alone:
   Prisma's native engine sends a file as one multi-statement query, in which PostgreSQL refuses
   CONCURRENTLY (prisma/orm#14456);
3. `<ts>_guard_constraints_validate`: VALIDATE CONSTRAINT (a lock the app's writes pass), then SET
   NOT NULL, which a validated CHECK (col IS NOT NULL) lets PostgreSQL do without a scan.
What the folder already holds is read with PostgreSQL's own parser, so a second run writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from guard.constraints import enforcement as e
from guard.constraints.enforcement import Enforcer
from guard.constraints.plan import RulePlan
from guard.schema.history import SCRIPT, read_migrations

NOT_VALID_STEP = "guard_constraints_not_valid"
VALIDATE_STEP = "guard_constraints_validate"
UNIQUE_STEP = "guard_unique_"
# Bounds how long a statement queues for its lock, and so how long the app's writes queue behind it.
LOCK_TIMEOUT = "SET lock_timeout = '500ms';"
# `migrate deploy` runs every file on one connection: a session SET left in force would bound the
# next file's CREATE INDEX CONCURRENTLY too, whose waits for the app's open transactions then fail
# and leave an invalid index. So a file that sets it ends by clearing it.
RESET_LOCK_TIMEOUT = "RESET lock_timeout;"
TIMESTAMP = "%Y%m%d%H%M%S"
STAMPED = re.compile(r"(\d{14})_")


@dataclass(frozen=True)
class Written:
    """What the migrations already do to guard's objects: constraints added and validated, indexes made."""

    added: frozenset[tuple[str, str]] = frozenset()  # (table, constraint)
    validated: frozenset[tuple[str, str]] = frozenset()
    indexes: frozenset[str] = frozenset()
    not_null: frozenset[tuple[str, str]] = frozenset()  # (table, column)
    latest: str = ""  # the newest folder's timestamp


@dataclass(frozen=True)
class Migration:
    """One folder to write: its name and its migration.sql."""

    name: str
    script: str


@dataclass(frozen=True)
class Blocked:
    """A rule whose rows break the constraint a step would add or validate."""

    rule: str
    findings: int
    step: str


@dataclass(frozen=True)
class Rollout:
    """The folders a run writes, and the rules that keep a step from being written."""

    migrations: tuple[Migration, ...]
    blocked: tuple[Blocked, ...]


def read_written(folder: Path) -> Written:
    """Parse every migration.sql with pglast (PostgreSQL's parser) and collect what it does."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    found = _Found()
    files = read_migrations(folder)
    for migration in files:
        try:
            statements = parse_sql(migration.script)
        except ParseError:  # PostgreSQL refuses it too, so nothing in it ever ran
            continue
        for raw in statements:
            found.collect(raw.stmt)
    stamps = [m.group(1) for f in files if (m := STAMPED.match(f.name))]
    return Written(
        frozenset(found.added),
        frozenset(found.validated),
        frozenset(found.indexes),
        frozenset(found.not_null),
        max(stamps, default=""),
    )


class _Found:
    """What the statements read so far do: the sets a Written is made of."""

    def __init__(self) -> None:
        self.added: set[tuple[str, str]] = set()
        self.validated: set[tuple[str, str]] = set()
        self.not_null: set[tuple[str, str]] = set()
        self.indexes: set[str] = set()

    def collect(self, statement: object) -> None:
        from pglast import ast
        from pglast.enums import AlterTableType

        if isinstance(statement, ast.IndexStmt) and statement.idxname:
            self.indexes.add(statement.idxname)
        if not isinstance(statement, ast.AlterTableStmt) or statement.relation is None:
            return
        table = str(statement.relation.relname)
        for cmd in statement.cmds or ():
            if not isinstance(cmd, ast.AlterTableCmd):
                continue
            if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
                if cmd.def_.conname:
                    self.added.add((table, cmd.def_.conname))
            elif cmd.subtype == AlterTableType.AT_ValidateConstraint and cmd.name:
                self.validated.add((table, cmd.name))
            elif cmd.subtype == AlterTableType.AT_SetNotNull and cmd.name:
                self.not_null.add((table, cmd.name))


def plan_rollout(plans: Sequence[RulePlan], written: Written, now: datetime | None = None) -> Rollout:
    """Return the folders still to write, in order, and the rules whose findings hold a step back."""
    steps: list[tuple[str, str]] = []
    blocked: list[Blocked] = []
    adds = [x for p in plans for x in p.ours if _constraint(x) and (x.table, x.name) not in written.added]
    if adds:
        body = [LOCK_TIMEOUT, *_each(adds, e.add_statement), RESET_LOCK_TIMEOUT]
        steps.append((NOT_VALID_STEP, _script(body, NOT_VALID_NOTE)))
    for plan in plans:
        for x in plan.ours:
            if x.kind != e.UNIQUE_INDEX or x.name in written.indexes:
                continue
            if plan.satisfied:
                steps.append(
                    (f"{UNIQUE_STEP}{x.table}_{x.column}", _script([e.index_statement(x)], UNIQUE_NOTE))
                )
            else:
                blocked.append(Blocked(plan.rule.id, plan.findings, f"{UNIQUE_STEP}{x.table}_{x.column}"))
    pending = [(p, _to_validate(p, written)) for p in plans]
    pending = [(p, xs) for p, xs in pending if xs]
    if any(not p.satisfied for p, _ in pending):
        blocked.extend(Blocked(p.rule.id, p.findings, VALIDATE_STEP) for p, _ in pending if not p.satisfied)
    elif pending:
        validates = [x for _, xs in pending for x in xs if _constraint(x)]
        not_nulls = [x for _, xs in pending for x in xs if x.kind == e.NOT_NULL]
        body = [
            LOCK_TIMEOUT,
            *_each(validates, e.validate_statement),
            *_each(not_nulls, e.set_not_null_statement),
            RESET_LOCK_TIMEOUT,
        ]
        steps.append((VALIDATE_STEP, _script(body, VALIDATE_NOTE)))
    stamps = _timestamps(len(steps), written.latest, now or datetime.now(UTC))
    migrations = tuple(
        Migration(f"{stamp}_{_folder_name(step)}", text)
        for stamp, (step, text) in zip(stamps, steps, strict=True)
    )
    return Rollout(migrations, tuple(blocked))


def write_rollout(folder: Path, rollout: Rollout) -> list[Path]:
    """Create each folder and its migration.sql; return the files written."""
    written = []
    for migration in rollout.migrations:
        target = folder / migration.name
        target.mkdir()
        (target / SCRIPT).write_text(migration.script, encoding="utf-8", newline="\n")
        written.append(target / SCRIPT)
    return written


NOT_VALID_NOTE = (
    "-- Written by `guard constraints migrate`: the rules as constraints, checked on every new write.\n"
    "-- NOT VALID: the rows already there are not read under the lock (the validate step reads them)."
)
UNIQUE_NOTE = (
    "-- Written by `guard constraints migrate`: built without blocking writes, alone in its file\n"
    "-- because PostgreSQL refuses CONCURRENTLY inside a multi-statement query (prisma/orm#14456)."
)
VALIDATE_NOTE = (
    "-- Written by `guard constraints migrate` once no row broke the rules: existing rows are read\n"
    "-- under a lock the app's writes pass; a validated CHECK (col IS NOT NULL) spares SET NOT NULL a scan."
)


def _constraint(enforcer: Enforcer) -> bool:
    return enforcer.kind in (e.CHECK, e.FOREIGN_KEY)


def _to_validate(plan: RulePlan, written: Written) -> list[Enforcer]:
    """The plan's constraints no migration validates yet, and its columns no migration sets NOT NULL."""
    checks = [x for x in plan.ours if _constraint(x) and (x.table, x.name) not in written.validated]
    columns = [x for x in plan.ours if x.kind == e.NOT_NULL and (x.table, x.column) not in written.not_null]
    return checks + columns


def _each(enforcers: Sequence[Enforcer], statement: Callable[[Enforcer], str]) -> list[str]:
    return [f"-- {x.rule}\n{statement(x)}" for x in enforcers]


def _script(statements: Sequence[str], note: str) -> str:
    return note + "\n" + "\n\n".join(statements) + "\n"


def _folder_name(step: str) -> str:
    """Fold a step's name the way Prisma folds `--name`: lower case, anything else an underscore."""
    return re.sub(r"[^a-z0-9_]", "_", step.lower())


def _timestamps(count: int, latest: str, now: datetime) -> list[str]:
    """Return `count` UTC timestamps one second apart, each later than every existing folder's."""
    start = now.astimezone(UTC).replace(microsecond=0)
    if latest and start.strftime(TIMESTAMP) <= latest:
        start = datetime.strptime(latest, TIMESTAMP).replace(tzinfo=UTC) + timedelta(seconds=1)
    return [(start + timedelta(seconds=n)).strftime(TIMESTAMP) for n in range(count)]
