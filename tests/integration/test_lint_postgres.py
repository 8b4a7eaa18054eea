"""The migration lint on a real PostgreSQL: real migration folders, the live catalog, its own verdicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from conftest import MIGRATIONS, create_database, drop_database, unique_name, url_for
from psycopg import sql

from guard.checks import CheckContext
from guard.checks import migrations as migrations_check
from guard.checks.migration_lint import lint_pending
from guard.config.settings import Settings
from guard.db.database import Database
from guard.findings.finding import CheckResult, Finding
from guard.schema.history import MigrationFile, apply_and_record, read_migrations
from tests.lint_cases import ROLLOUT, TIMEOUT, TYPE_CHANGES

pytestmark = pytest.mark.integration

LINT_KINDS = {
    "index_not_concurrent",
    "constraint_without_not_valid",
    "not_null_without_check",
    "concurrently_not_alone",
    "column_type_rewrite",
    "drop_column",
    "drop_table",
    "rename_column",
    "rename_table",
    "lock_timeout_missing",
    "migration_unparsable",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the thulobazaar migrations (all applied in the test database) to add pending ones to."""
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    return copy


def add(folder: Path, name: str, script: str) -> Path:
    path = folder / name / "migration.sql"
    path.parent.mkdir()
    path.write_text(script)
    return path


def check(url: str, folder: Path, **settings: object) -> CheckResult:
    return migrations_check.run(CheckContext(Settings(database_url=url, migrations_dir=folder, **settings)))


def lint_findings(result: CheckResult) -> list[Finding]:
    return [f for f in result.findings if f.kind in LINT_KINDS]


def test_the_three_rollout_migrations_pass_then_apply_and_enforce(
    db: Database, db_url: str, folder: Path
) -> None:
    db.execute("UPDATE ads SET slug = 'ad-' || id WHERE slug IS NULL OR btrim(slug) = ''")
    for name, script in ROLLOUT:
        add(folder, name, script)
    result = check(db_url, folder)
    assert lint_findings(result) == []
    assert result.counts["migration_pending"] == 3 and result.info["linted"] == 3
    # Applied one file per query, as Prisma's engine sends them: each runs, and the history is clean.
    for migration in read_migrations(folder)[-3:]:
        apply_and_record(db, migration)
    assert check(db_url, folder).ok and not any(check(db_url, folder).counts.values())
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    insert = "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('Honda', %s, 1, 1)"
    db.execute(insert, ("honda-city-1",))
    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute(insert, (None,))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(insert, ("  ",))


def test_the_validate_step_passes_when_the_first_two_are_already_applied(
    db: Database, db_url: str, folder: Path
) -> None:
    """The live database then holds the NOT VALID check that file 3 validates before SET NOT NULL."""
    third, script = ROLLOUT[2]
    for name, text in ROLLOUT[:2]:
        apply_and_record(db, read_migrations_of(add(folder, name, text)))
    add(folder, third, script)
    result = check(db_url, folder)
    assert lint_findings(result) == [] and result.info["linted"] == 1
    assert {f.subject for f in result.findings} == {f"migration:{third}"}


def read_migrations_of(path: Path) -> MigrationFile:
    return next(m for m in read_migrations(path.parent.parent) if m.path == path)


def test_set_not_null_is_fine_after_a_check_validated_in_the_live_database(
    db: Database, db_url: str, folder: Path
) -> None:
    db.execute("UPDATE ads SET slug = 'ad-' || id WHERE slug IS NULL")
    add(folder, "20260101000000_not_null", TIMEOUT + 'ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;\n')
    assert [f.kind for f in lint_findings(check(db_url, folder))] == ["not_null_without_check"]
    db.execute('ALTER TABLE "ads" ADD CONSTRAINT "slug_present" CHECK ("slug" IS NOT NULL) NOT VALID')
    assert [f.kind for f in lint_findings(check(db_url, folder))] == ["not_null_without_check"]
    db.execute('ALTER TABLE "ads" VALIDATE CONSTRAINT "slug_present"')
    assert lint_findings(check(db_url, folder)) == []


def test_concurrently_with_another_statement_fails_as_one_query_and_is_a_finding(
    db: Database, db_url: str, folder: Path
) -> None:
    path = add(
        folder,
        "20260101000000_index",
        TIMEOUT + 'CREATE INDEX CONCURRENTLY "ads_title_idx" ON "ads" ("title");\n',
    )
    (finding,) = lint_findings(check(db_url, folder))
    assert (finding.kind, finding.subject, finding.path) == (
        "concurrently_not_alone",
        "migration:20260101000000_index:2",
        str(path),
    )
    # What the rule is for: sent as one multi-statement query (Prisma's native engine), it fails.
    with pytest.raises(psycopg.errors.ActiveSqlTransaction):
        db.execute(path.read_bytes())  # type: ignore[arg-type]


def test_a_fresh_database_with_no_history_lints_every_folder_and_finds_nothing(tmp_path: Path) -> None:
    name = unique_name("guard_fresh")
    create_database(name)
    try:
        result = check(url_for(name), MIGRATIONS)
        assert {(f.kind, f.subject) for f in result.findings} == {
            ("migrations_table_missing", "table:_prisma_migrations")
        }
        assert result.info["linted"] == len(read_migrations(MIGRATIONS))
    finally:
        drop_database(name)


def test_a_folder_that_creates_a_table_makes_it_new_for_the_folders_after_it(
    db_url: str, folder: Path
) -> None:
    add(folder, "20260101000000_drafts", 'CREATE TABLE "drafts" ("id" SERIAL PRIMARY KEY, "title" TEXT);\n')
    add(folder, "20260101000001_drafts_idx", 'CREATE INDEX "drafts_title_idx" ON "drafts" ("title");\n')
    add(
        folder,
        "20260101000002_drafts_gone",
        'ALTER TABLE "drafts" DROP COLUMN "title";\nDROP TABLE "drafts";\n',
    )
    assert lint_findings(check(db_url, folder)) == []


def test_a_guard_allow_comment_silences_its_rules_for_that_file(db_url: str, folder: Path) -> None:
    add(
        folder,
        "20260101000000_drop",
        "-- guard:allow drop_column (v2.3 stopped reading ads.description)\n"
        + TIMEOUT
        + 'ALTER TABLE "ads" DROP COLUMN "description";\nDROP TABLE "user_favorites";\n',
    )
    add(folder, "20260101000001_drop_again", TIMEOUT + 'ALTER TABLE "ads" DROP COLUMN "status";\n')
    result = check(db_url, folder)
    assert {(f.kind, f.subject) for f in lint_findings(result)} == {
        ("drop_table", "migration:20260101000000_drop:4"),
        ("drop_column", "migration:20260101000001_drop_again:2"),
    }
    assert result.info["lint_silenced"] == 1


def test_severities_come_from_settings_and_warnings_do_not_fail_the_check(db_url: str, folder: Path) -> None:
    add(folder, "20260101000000_views", 'ALTER TABLE "ads" ADD COLUMN "views" INTEGER;\n')
    default = check(db_url, folder)
    (warning,) = lint_findings(default)
    assert (warning.kind, warning.severity) == ("lock_timeout_missing", "warn")
    assert default.warn_kinds == {"lock_timeout_missing"}
    assert default.counts["migration_pending"] == 1 and not default.ok  # the pending folder itself fails
    levels = {"lock_timeout_missing": "error"}
    strict = check(db_url, folder, migration_lint={**Settings().migration_lint, **levels})
    assert [f.severity for f in lint_findings(strict)] == ["error"] and strict.warn_kinds == frozenset()
    off = check(db_url, folder, migration_lint={**Settings().migration_lint, "lock_timeout_missing": "off"})
    assert lint_findings(off) == [] and "lock_timeout_missing" not in off.counts


def test_an_unparsable_pending_migration_is_an_error_finding(db_url: str, folder: Path) -> None:
    path = add(folder, "20260101000000_broken", "ALTER TABLE ads ADD COLUMN;\n")
    (finding,) = lint_findings(check(db_url, folder))
    assert (finding.kind, finding.path, finding.severity) == ("migration_unparsable", str(path), None)
    assert "syntax error" in finding.message and "(line 1)" in finding.message


def test_rewrite_verdicts_match_postgresql(tmp_path: Path) -> None:
    """Each type change is linted against a real column, then applied: PostgreSQL rewrote the table
    (a new relfilenode) exactly when the lint said column_type_rewrite."""
    name = unique_name("guard_rewrite")
    create_database(name)
    folder = tmp_path / "migrations"
    folder.mkdir()
    try:
        with Database(url_for(name)) as db:
            for n, (old, new, _) in enumerate(TYPE_CHANGES):
                db.execute(sql.SQL("CREATE TABLE {} (c {})").format(sql.Identifier(f"t{n}"), sql.SQL(old)))
                db.execute(sql.SQL("INSERT INTO {} VALUES (NULL)").format(sql.Identifier(f"t{n}")))
                add(folder, f"{n:03d}_change", f'{TIMEOUT}ALTER TABLE "t{n}" ALTER COLUMN "c" TYPE {new};\n')
            outcome = lint_pending(read_migrations(folder), db, Settings().migration_lint)
            flagged = {f.subject.split(":")[1] for f in outcome.findings if f.kind == "column_type_rewrite"}
            verdicts = {}
            for n, migration in enumerate(read_migrations(folder)):
                table = sql.Literal(f"t{n}")
                before = db.fetch_one(sql.SQL("SELECT pg_relation_filenode({})").format(table))
                db.execute(migration.content)  # type: ignore[arg-type]
                after = db.fetch_one(sql.SQL("SELECT pg_relation_filenode({})").format(table))
                verdicts[migration.name] = before != after
        assert {m for m, rewrote in verdicts.items() if rewrote} == flagged
        assert [verdicts[f"{n:03d}_change"] for n in range(len(TYPE_CHANGES))] == [
            e for _, _, e in TYPE_CHANGES
        ]
    finally:
        drop_database(name)
