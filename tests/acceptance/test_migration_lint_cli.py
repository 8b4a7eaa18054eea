"""The real `guard check migrations` and `guard predeploy` on pending migrations that would lock or break."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.cli import MIGRATIONS_DIR, guard, guard_json
from tests.conftest import url_for
from tests.lint_cases import TIMEOUT

pytestmark = pytest.mark.acceptance

NAME = "20260101000000_next"

# rule -> (migration.sql, the line and statement the finding names); each on the migrated thulobazaar schema.
RULES = {
    "index_not_concurrent": (TIMEOUT + 'CREATE INDEX "ads_title_idx" ON "ads" ("title");\n', 2),
    "constraint_without_not_valid": (
        TIMEOUT + 'ALTER TABLE "ads" ADD CONSTRAINT "ads_title_short" CHECK (length("title") < 200);\n',
        2,
    ),
    "not_null_without_check": (TIMEOUT + 'ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;\n', 2),
    "concurrently_not_alone": (
        TIMEOUT + 'CREATE INDEX CONCURRENTLY "ads_title_idx" ON "ads" ("title");\n',
        2,
    ),
    "column_type_rewrite": (TIMEOUT + 'ALTER TABLE "ads" ALTER COLUMN "id" TYPE BIGINT;\n', 2),
    "drop_column": (TIMEOUT + 'ALTER TABLE "ads" DROP COLUMN "description";\n', 2),
    "drop_table": (TIMEOUT + 'DROP TABLE "user_favorites";\n', 2),
    "rename_column": (TIMEOUT + 'ALTER TABLE "ads" RENAME COLUMN "title" TO "headline";\n', 2),
    "rename_table": (TIMEOUT + 'ALTER TABLE "ads" RENAME TO "listings";\n', 2),
    "lock_timeout_missing": ('ALTER TABLE "ads" ADD COLUMN "views" INTEGER NOT NULL DEFAULT 0;\n', 1),
}


def project(tmp_path: Path, script: str) -> tuple[Path, Path]:
    """Return a migrations folder (the applied thulobazaar ones plus one pending) and the new file."""
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    path = folder / NAME / "migration.sql"
    path.parent.mkdir()
    path.write_text(script)
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    return folder, path


def environment(db_name: str, folder: Path, **extra: str) -> dict[str, str]:
    uploads = str(folder.parent)  # holds uploads/ads, the default scanned folder
    return {"DATABASE_URL": url_for(db_name), "MIGRATIONS_DIR": str(folder), "UPLOADS_ROOT": uploads, **extra}


def lint_findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for c in document["checks"] for f in c["findings"] if f["kind"] != "migration_pending"]


@pytest.mark.parametrize("rule", list(RULES))
def test_check_migrations_reports_each_rule_with_its_file_and_statement(
    db_name: str, tmp_path: Path, rule: str
) -> None:
    script, line = RULES[rule]
    folder, path = project(tmp_path, script)
    code, document = guard_json("check", "migrations", env=environment(db_name, folder))
    assert code == 1
    (finding,) = lint_findings(document)
    statement = script.splitlines()[line - 1].rstrip(";")
    assert (finding["kind"], finding["subject"], finding["path"]) == (
        rule,
        f"migration:{NAME}:{line}",
        str(path),
    )
    assert (finding["line"], finding["statement"]) == (line, statement)
    assert finding["severity"] == ("warn" if rule == "lock_timeout_missing" else "error")
    assert finding["message"].startswith(statement + ": ")


def test_the_table_shows_the_rule_the_file_and_the_statement(db_name: str, tmp_path: Path) -> None:
    folder, path = project(tmp_path, 'CREATE INDEX "ads_title_idx" ON "ads" ("title");\n')
    done = guard("check", "migrations", env=environment(db_name, folder))
    assert done.returncode == 1, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert "index_not_concurrent 1" in lines and "lock_timeout_missing warn 1" in lines
    assert "drop_column 0" in lines  # every rule is listed, so one that ran and found nothing shows
    example = next(line for line in lines if line.startswith("index_not_concurrent migration:"))
    assert f'migration:{NAME}:1 {path} CREATE INDEX "ads_title_idx" ON "ads" ("title"): ' in example


def test_a_guard_allow_comment_silences_the_rule_through_the_command(db_name: str, tmp_path: Path) -> None:
    script = "-- guard:allow drop_column: v2.3 no longer reads it\n" + RULES["drop_column"][0]
    folder, _ = project(tmp_path, script)
    code, document = guard_json("check", "migrations", env=environment(db_name, folder))
    assert lint_findings(document) == []
    assert document["checks"][0]["info"]["lint_silenced"] == 1
    assert code == 1  # the pending folder itself is still a finding of `guard check`


def predeploy(db_name: str, folder: Path, **extra: str) -> tuple[int, str]:
    done = guard("predeploy", env=environment(db_name, folder, **extra))
    return done.returncode, done.stdout + done.stderr


def test_predeploy_passes_on_warnings_and_fails_on_errors(db_name: str, tmp_path: Path) -> None:
    folder, path = project(tmp_path, RULES["lock_timeout_missing"][0])
    code, out = predeploy(db_name, folder)
    assert code == 0, out
    assert "predeploy PASSED with 2 warnings: safe to deploy" in out  # the pending folder, no lock_timeout
    assert "lock_timeout_missing" in out and "this deploy applies it" in out
    code, document = guard_json("predeploy", env=environment(db_name, folder))
    assert code == 0 and document["ok"] is True
    path.write_text(RULES["index_not_concurrent"][0])
    code, out = predeploy(db_name, folder)
    assert code == 1 and "predeploy FAILED" in out


def test_predeploy_follows_the_configured_severity(db_name: str, tmp_path: Path) -> None:
    folder, _ = project(tmp_path, RULES["lock_timeout_missing"][0])
    config = tmp_path / "guard.toml"
    config.write_text('[migration_lint]\nlock_timeout_missing = "error"\n')
    assert predeploy(db_name, folder, GUARD_CONFIG=str(config))[0] == 1
    config.write_text('[migration_lint]\nlock_timeout_missing = "off"\n')
    code, out = predeploy(db_name, folder, GUARD_CONFIG=str(config))
    assert code == 0 and "PASSED with 1 warning:" in out
    config.write_text('[migration_lint]\nlock_timeout = "warn"\n')
    done = guard("predeploy", env=environment(db_name, folder, GUARD_CONFIG=str(config)))
    assert done.returncode == 2 and "unknown rule 'lock_timeout'" in done.stderr
