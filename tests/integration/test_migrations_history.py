"""Migration history on a real Postgres: every state of `_prisma_migrations`, and baseline."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import MIGRATIONS, create_database, drop_database, unique_name, url_for

from guard.checks import CheckContext
from guard.checks import drift as drift_check
from guard.checks import migrations as migrations_check
from guard.cli.schema import run_baseline
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import UsageError
from guard.findings.finding import CheckResult
from guard.schema.history import read_migrations

pytestmark = pytest.mark.integration


def check(url: str, folder: Path = MIGRATIONS) -> CheckResult:
    return migrations_check.run(CheckContext(Settings(database_url=url, migrations_dir=folder)))


def found(result: CheckResult) -> set[tuple[str, str]]:
    return {(f.kind, f.subject) for f in result.findings}


def test_a_database_migrated_by_prisma_has_a_clean_history(db_url: str) -> None:
    result = check(db_url)
    assert result.ok and result.info == {"folders": 5, "applied_rows": 5}


def test_missing_table(db: Database, db_url: str) -> None:
    db.execute("DROP TABLE _prisma_migrations")
    assert found(check(db_url)) == {("migrations_table_missing", "table:_prisma_migrations")}


def test_pending_failed_unknown_and_rolled_back(db: Database, db_url: str) -> None:
    db.execute("DELETE FROM _prisma_migrations WHERE migration_name = '20240502150000_ad_listing_indexes'")
    db.execute(
        "UPDATE _prisma_migrations SET finished_at = NULL, logs = 'ERROR: boom'"
        " WHERE migration_name = '20240410080000_add_user_favorites'"
    )
    db.execute(
        "UPDATE _prisma_migrations SET rolled_back_at = now()"
        " WHERE migration_name = '20240320120000_add_ad_custom_fields'"
    )
    db.execute(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, finished_at)"
        " VALUES ('x', 'abc', '20250101000000_from_another_branch', now())"
    )
    result = check(db_url)
    indexes = "migration:20240502150000_ad_listing_indexes"
    assert found(result) == {
        ("migration_pending", indexes),
        ("migration_failed", "migration:20240410080000_add_user_favorites"),
        ("migration_pending", "migration:20240320120000_add_ad_custom_fields"),
        ("migration_unknown", "migration:20250101000000_from_another_branch"),
        # The two pending folders (the failed one waits for `migrate resolve`) are linted against a
        # database that has their tables: plain CREATE INDEX and a validating CHECK on "ads", and no
        # lock_timeout anywhere.
        ("index_not_concurrent", f"{indexes}:2"),
        ("index_not_concurrent", f"{indexes}:5"),
        ("constraint_without_not_valid", f"{indexes}:8"),
        *(("lock_timeout_missing", f"{indexes}:{line}") for line in (2, 5, 8)),
        ("lock_timeout_missing", "migration:20240320120000_add_ad_custom_fields:2"),
    }
    assert result.counts["migration_pending"] == 2
    failed = [f for f in result.findings if f.kind == "migration_failed"][0]
    assert "ERROR: boom" in failed.message


def test_a_rolled_back_row_followed_by_a_successful_retry_is_clean(db: Database, db_url: str) -> None:
    db.execute(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, rolled_back_at)"
        " SELECT 'retry', checksum, migration_name, now() FROM _prisma_migrations"
        " WHERE migration_name = '20240101000000_init'"
    )
    assert check(db_url).ok


def test_an_edited_file_is_found_and_line_endings_are_not_edits(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    crlf = folder / "20240101000000_init" / "migration.sql"
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
    assert check(db_url, folder).ok
    edited = folder / "20240215093000_add_category_form_template" / "migration.sql"
    edited.write_text(edited.read_text() + "\n-- tweak\n")
    result = check(db_url, folder)
    assert found(result) == {("migration_edited", "migration:20240215093000_add_category_form_template")}
    assert (
        result.findings[0].detail["checksum_file"]
        == hashlib.sha256(  # type: ignore[index]
            edited.read_bytes()
        ).hexdigest()
    )


@pytest.fixture
def unrecorded_url() -> str:
    """A database with the thulobazaar schema built by its migrations but no history (the seed's case)."""
    name = unique_name("guard_nohist")
    create_database(name)
    with Database(url_for(name)) as db:
        for migration in read_migrations(MIGRATIONS):
            db.execute(migration.content)  # type: ignore[arg-type]
    yield url_for(name)  # type: ignore[misc]
    drop_database(name)


def baseline(url: str, force: bool = False) -> int:
    args = argparse.Namespace(force=force, json=False)
    return run_baseline(args, Settings(database_url=url, migrations_dir=MIGRATIONS))


PRISMA_COLUMNS = [
    ("id", "character varying", 36, "NO", None),
    ("checksum", "character varying", 64, "NO", None),
    ("finished_at", "timestamp with time zone", None, "YES", None),
    ("migration_name", "character varying", 255, "NO", None),
    ("logs", "text", None, "YES", None),
    ("rolled_back_at", "timestamp with time zone", None, "YES", None),
    ("started_at", "timestamp with time zone", None, "NO", "now()"),
    ("applied_steps_count", "integer", None, "NO", "0"),
]


def test_baseline_writes_prismas_table_and_rows_then_history_is_clean(unrecorded_url: str) -> None:
    assert found(check(unrecorded_url)) == {("migrations_table_missing", "table:_prisma_migrations")}
    assert baseline(unrecorded_url) == 0
    with Database(unrecorded_url) as db:
        columns = db.fetch_all(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_name = '_prisma_migrations'"
            " ORDER BY ordinal_position"
        )
        pkey = db.fetch_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = '_prisma_migrations'::regclass AND contype = 'p'"
        )
        rows = db.fetch_all(
            "SELECT id, checksum, migration_name, finished_at IS NOT NULL, rolled_back_at, logs,"
            " applied_steps_count, started_at <= finished_at FROM _prisma_migrations"
            " ORDER BY migration_name"
        )
    assert [tuple(c) for c in columns] == PRISMA_COLUMNS
    assert pkey == ("PRIMARY KEY (id)",)
    files = read_migrations(MIGRATIONS)
    assert [r[2] for r in rows] == [f.name for f in files]
    for row, migration in zip(rows, files, strict=True):
        assert len(row[0]) == 36
        assert row[1] == hashlib.sha256(migration.path.read_bytes()).hexdigest()
        assert row[3:] == (True, None, "", 0, True)
    assert check(unrecorded_url).ok
    assert drift_check.run(CheckContext(Settings(database_url=unrecorded_url, migrations_dir=MIGRATIONS))).ok


def test_baseline_refuses_on_drift_unless_forced(
    unrecorded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Database(unrecorded_url) as db:
        db.execute('ALTER TABLE "ads" DROP CONSTRAINT "ads_price_non_negative"')
    assert baseline(unrecorded_url) == 1
    assert "constraint:ads.ads_price_non_negative" in capsys.readouterr().out
    assert found(check(unrecorded_url)) == {("migrations_table_missing", "table:_prisma_migrations")}
    assert baseline(unrecorded_url, force=True) == 0
    assert check(unrecorded_url).ok


def test_baseline_refuses_a_database_that_has_history(db_url: str) -> None:
    with pytest.raises(UsageError, match="already holds 5 rows"):
        baseline(db_url)


@pytest.mark.parametrize("stray", ["20240601000000_empty_folder", ".scratch"])
@pytest.mark.parametrize("force", [False, True])
def test_baseline_refuses_a_migration_folder_without_migration_sql(
    unrecorded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], stray: str, force: bool
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    (folder / stray).mkdir()
    if stray == ".scratch":
        (folder / stray / "notes.sql").write_text("-- ideas\n")
    args = argparse.Namespace(force=force, json=False)
    assert run_baseline(args, Settings(database_url=unrecorded_url, migrations_dir=folder)) == 1
    out = capsys.readouterr()
    assert f"migration_file_missing migration:{stray}" in " ".join(out.out.split())
    assert "1 migration folder without migration.sql" in out.err
    assert found(check(unrecorded_url, folder)) == {
        ("migrations_table_missing", "table:_prisma_migrations"),
        ("migration_file_missing", f"migration:{stray}"),
    }
