"""An invalid index and an adopted hotfix, judged by Prisma's real CLI."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import guard, guard_json
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

DEV = ("migrate", "dev", "--skip-generate", "--skip-seed")
DRIFT = "Drift detected: Your database schema is not in sync with your migration history."
IN_SYNC = "Already in sync, no schema change or pending migration was found."
UP_TO_DATE = "Database schema is up to date!"
HOTFIX = 'CREATE INDEX CONCURRENTLY "ads_status_idx" ON "ads"("status")'


def run_sql(name: str, *statements: str) -> None:
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def findings(check: str, env: dict[str, str]) -> list[tuple[str, str]]:
    code, document = guard_json("check", check, env=env)
    found = [(f["kind"], f["subject"]) for c in document["checks"] for f in c["findings"]]
    assert code == (1 if found else 0), document
    return found


def test_an_invalid_index_is_drift_to_guard_and_not_to_prisma(db_name: str, tmp_path: Path) -> None:
    migrations = project(tmp_path)
    env = {"DATABASE_URL": database_url(db_name), "MIGRATIONS_DIR": str(migrations)}
    run_sql(
        db_name,
        'DROP INDEX "categories_slug_key"',
        "INSERT INTO categories (name, slug) VALUES ('a', 'dup'), ('b', 'dup')",
    )
    with pytest.raises(psycopg.errors.UniqueViolation):  # a real failed concurrent build
        run_sql(db_name, 'CREATE UNIQUE INDEX CONCURRENTLY "categories_slug_key" ON "categories"("slug")')
    assert findings("drift", env) == [("index_invalid", "index:categories_slug_key")]
    verdict = prisma(migrations, database_url(db_name), *DEV)
    assert verdict.code == 0 and IN_SYNC in verdict.text, verdict  # Prisma reads indisvalid nowhere
    run_sql(db_name, "DELETE FROM categories WHERE name = 'b'")
    code, result = guard_json("drift", "repair", "--apply", "--no-backup", env=env)
    assert code == 0 and result["drift"]["ok"], result
    assert findings("drift", env) == []


def test_an_adopted_hotfix_is_history_to_guard_and_to_prisma(db_name: str, tmp_path: Path) -> None:
    migrations = project(tmp_path)
    schema = migrations.parent / "schema.prisma"  # the team adds the hotfix to the schema too
    text = schema.read_text()
    schema.write_text(
        text.replace(
            '  @@index([userId])\n  @@map("ads")', '  @@index([userId])\n  @@index([status])\n  @@map("ads")'
        )
    )
    assert schema.read_text() != text
    env = {"DATABASE_URL": database_url(db_name), "MIGRATIONS_DIR": str(migrations)}
    run_sql(db_name, HOTFIX)
    assert findings("drift", env) == [("index_extra", "index:ads_status_idx")]
    before = prisma(migrations, database_url(db_name), *DEV)
    assert before.code == 130 and DRIFT in before.text, before

    folders = sorted(p.name for p in migrations.iterdir())
    planned = guard("drift", "adopt", env=env)
    assert planned.returncode == 1 and 'CREATE INDEX "ads_status_idx" ON public.ads' in planned.stdout
    assert sorted(p.name for p in migrations.iterdir()) == folders  # the plan wrote nothing
    code, adopted = guard_json("drift", "adopt", "--apply", env=env)
    assert code == 0 and adopted["applied"], adopted
    assert re.fullmatch(r"\d{14}_guard_adopt_ads_status_idx", adopted["migration"]), adopted
    written = (migrations / adopted["migration"] / "migration.sql").read_text()
    assert 'CREATE INDEX "ads_status_idx" ON public.ads USING btree (status);' in written
    assert "CONCURRENTLY" not in written  # the migrations' dialect, as `migrate diff` writes it

    assert findings("drift", env) == [] and findings("migrations", env) == []
    status = prisma(migrations, database_url(db_name), "migrate", "status")
    assert status.code == 0 and UP_TO_DATE in status.text and "6 migrations found" in status.text, status
    after = prisma(migrations, database_url(db_name), *DEV)
    assert after.code == 0 and IN_SYNC in after.text, after
    again = guard("drift", "adopt", env=env)
    assert again.returncode == 0 and again.stdout.startswith("nothing to adopt"), again.stdout
