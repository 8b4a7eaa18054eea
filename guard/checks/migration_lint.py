"""The migration lint inside `guard check migrations`: each pending folder's hazards, as graded findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from guard.config.severities import Level
from guard.db.database import Database, load_query
from guard.findings.finding import Finding
from guard.lint.facts import Facts, facts_from_rows
from guard.lint.hazards import Hazard, lint
from guard.lint.script import Script, ScriptError, parse_script
from guard.schema.history import MigrationFile

CHECK = "migrations"
UNPARSABLE = "migration_unparsable"


@dataclass(frozen=True)
class LintOutcome:
    """The lint's findings, and how many hazards a `guard:allow` comment silenced."""

    findings: tuple[Finding, ...] = ()
    silenced: int = 0


def lint_kinds(levels: Mapping[str, Level]) -> list[str]:
    """Return the kinds the lint can report: every rule not turned off, then an unreadable file."""
    return [*(rule for rule, level in levels.items() if level != "off"), UNPARSABLE]


def lint_pending(pending: list[MigrationFile], db: Database, levels: Mapping[str, Level]) -> LintOutcome:
    """Lint the pending migrations, in order, against what the live database holds."""
    if not pending:
        return LintOutcome()
    parsed: list[tuple[str, Script]] = []
    found: list[Finding] = []
    for migration in pending:
        try:
            parsed.append((migration.name, parse_script(migration.script)))
        except (ScriptError, UnicodeDecodeError) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            found.append(
                Finding(
                    CHECK,
                    UNPARSABLE,
                    f"migration:{migration.name}",
                    f"PostgreSQL's parser refuses migration.sql, so it cannot be linted: {why}",
                    path=str(migration.path),
                )
            )
    hazards = lint(parsed, read_facts(db))
    paths = {m.name: str(m.path) for m in pending}
    graded = [h for h in hazards if not h.silenced and levels.get(h.rule, "error") != "off"]
    found += [_finding(h, paths[h.migration], levels) for h in graded]
    return LintOutcome(tuple(found), sum(1 for h in hazards if h.silenced))


def read_facts(db: Database) -> Facts:
    """Read the live columns and CHECK constraints of the tables the session sees."""
    return facts_from_rows(db.fetch_all(load_query("lint_columns")), db.fetch_all(load_query("lint_checks")))


def _finding(hazard: Hazard, path: str, levels: Mapping[str, Level]) -> Finding:
    statement = hazard.statement
    return Finding(
        CHECK,
        hazard.rule,
        f"migration:{hazard.migration}:{statement.line}",  # a subject per statement: the ledger keeps each
        f"{statement.shown}: {hazard.reason}",
        path=path,
        detail={"line": statement.line, "statement": statement.text},
        severity="warn" if levels.get(hazard.rule) == "warn" else "error",
    )
