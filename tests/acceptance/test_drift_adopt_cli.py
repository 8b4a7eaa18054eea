"""`guard drift adopt` refuses what is not a hotfix to record: a lost column, a database without history."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import MIGRATIONS_DIR, guard, guard_json
from tests.conftest import url_for

pytestmark = pytest.mark.acceptance


@pytest.fixture
def env(db_name: str, tmp_path: Path) -> dict[str, str]:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    return {"DATABASE_URL": url_for(db_name), "MIGRATIONS_DIR": str(migrations)}


def run_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def folders(env: dict[str, str]) -> list[str]:
    return sorted(p.name for p in Path(env["MIGRATIONS_DIR"]).iterdir())


def test_adopting_a_lost_column_is_refused_unless_allowed(env: dict[str, str]) -> None:
    run_sql(env["DATABASE_URL"], 'ALTER TABLE "categories" DROP COLUMN "form_template"')
    before = folders(env)
    code, refused = guard_json("drift", "adopt", "--apply", env=env)
    assert code == 1 and refused["ok"] is False, refused
    assert refused["refused"][0]["sql"] == 'ALTER TABLE "public"."categories" DROP COLUMN "form_template"'
    assert folders(env) == before
    code, adopted = guard_json(
        "drift", "adopt", "--apply", "--allow-destructive", "--name", "no form", env=env
    )
    assert code == 0 and adopted["migration"].endswith("_guard_adopt_no_form"), adopted
    assert folders(env) == sorted([*before, adopted["migration"]])
    assert guard("check", "drift", env=env).returncode == 0


def test_a_database_without_history_must_be_baselined_first(env: dict[str, str]) -> None:
    run_sql(
        env["DATABASE_URL"],
        'DROP TABLE "_prisma_migrations"',
        'CREATE INDEX "ads_status_idx" ON "ads"("status")',
    )
    done = guard("drift", "adopt", "--apply", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "guard: no _prisma_migrations table: run `guard migrations baseline` before adopting drift\n"
    )


def test_nothing_to_adopt_is_exit_0(env: dict[str, str]) -> None:
    code, document = guard_json("drift", "adopt", env=env)
    assert code == 0 and document == {"ok": True, "applied": False, "migration": None, "adopts": []}
