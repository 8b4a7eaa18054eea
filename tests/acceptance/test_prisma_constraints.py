"""`guard constraints` through the real command and Prisma's own `migrate deploy`, step by step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import guard
from tests.integration.constraints_support import (
    APP_INSERT,
    APP_SLUGS,
    BROKEN_ROWS,
    COUNTS,
    FIXES,
    NOT_VALID_SQL,
    UNIQUE_SQL,
    VALIDATE_SQL,
    guard_folders,
)
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

APPLIED = "All migrations have been successfully applied."
UP_TO_DATE = "Database schema is up to date!"
IN_SYNC = "Already in sync, no schema change or pending migration was found."


def run_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def constraints(url: str, migrations: Path, *args: str) -> tuple[int, str, str]:
    done = guard("constraints", *args, env={"DATABASE_URL": url, "MIGRATIONS_DIR": str(migrations)})
    return done.returncode, done.stdout, done.stderr


def scripts(migrations: Path) -> list[str]:
    return [(p / "migration.sql").read_text() for p in sorted(migrations.iterdir()) if "_guard_" in p.name]


def app_writes(url: str) -> list[tuple[str | None, bool]]:
    """Insert each of the app's slugs as the app would; return which ones PostgreSQL took."""
    taken = []
    with psycopg.connect(url, autocommit=True) as conn:
        for slug, _ in APP_SLUGS:
            try:
                conn.execute(APP_INSERT, (slug,))
            except (psycopg.errors.CheckViolation, psycopg.errors.NotNullViolation):
                taken.append((slug, False))
            else:
                taken.append((slug, True))
    return taken


def test_the_plan_prints_each_rules_constraint_and_count(db_name: str, tmp_path: Path) -> None:
    url = database_url(db_name)
    run_sql(url, *BROKEN_ROWS)
    migrations = project(tmp_path)
    code, out, _ = constraints(url, migrations, "plan", "--json")
    plan = json.loads(out)
    assert code == 1 and plan["ok"] is False
    assert {r["rule"]: r["findings"] for r in plan["rules"]} == COUNTS
    code, out, _ = constraints(url, migrations, "plan")
    assert code == 1
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "ads.slug.unique 2 UNIQUE INDEX guard_ads_slug_unique (non-blank values) missing" in lines
    assert "ad_images.ad_id.references 0 FOREIGN KEY ad_images_ad_id_fkey (the app's own) valid" in lines
    assert "NOT NULL ads.slug (after CHECK guard_ads_slug_required_not_null) missing" in lines
    assert guard_folders(migrations) == []


def test_prisma_deploys_every_step_and_postgresql_refuses_bad_slugs(db_name: str, tmp_path: Path) -> None:
    url = database_url(db_name)
    run_sql(url, *BROKEN_ROWS)
    migrations = project(tmp_path)

    code, out, err = constraints(url, migrations, "migrate")
    assert code == 1, out + err
    assert out.startswith("wrote ") and "_guard_constraints_not_valid/migration.sql\n" in out
    assert "ads.slug.required                2 findings  holds back guard_constraints_validate" in out
    assert err.startswith("guard: not written while 5 rules still have findings")
    assert scripts(migrations) == [NOT_VALID_SQL]
    deployed = prisma(migrations, url, "migrate", "deploy")
    assert deployed.code == 0 and APPLIED in deployed.text, deployed
    assert app_writes(url) == list(APP_SLUGS)  # new writes are checked while the old rows wait for their fix

    run_sql(url, "DELETE FROM ads WHERE id > 100", *FIXES)
    code, out, err = constraints(url, migrations, "migrate")
    assert code == 0, out + err
    assert "note: ads.slug becomes NOT NULL" in out
    assert scripts(migrations) == [NOT_VALID_SQL, UNIQUE_SQL, VALIDATE_SQL]
    code, out, _ = constraints(url, migrations, "migrate")
    assert code == 0 and out.startswith("nothing new to write"), out
    assert len(scripts(migrations)) == 3
    deployed = prisma(migrations, url, "migrate", "deploy")
    assert deployed.code == 0 and APPLIED in deployed.text, deployed
    status = prisma(migrations, url, "migrate", "status")
    assert status.code == 0 and UP_TO_DATE in status.text, status

    env = {"DATABASE_URL": url, "MIGRATIONS_DIR": str(migrations)}
    for check in ("migrations", "drift"):
        done = guard("check", check, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    assert app_writes(url) == list(APP_SLUGS)
    with pytest.raises(psycopg.errors.UniqueViolation), psycopg.connect(url, autocommit=True) as conn:
        conn.execute(APP_INSERT, ("honda-city-1",))
    code, out, _ = constraints(url, migrations, "plan")
    assert code == 0 and "every rule holds" in out


def test_migrate_without_a_migrations_folder_is_one_line_and_exit_2(db_url: str) -> None:
    done = guard("constraints", "migrate", env={"DATABASE_URL": db_url})
    assert done.returncode == 2
    assert done.stderr.startswith("guard: MIGRATIONS_DIR is not set") and done.stderr.count("\n") == 1


def test_prisma_migrate_dev_sees_only_the_new_not_nulls_until_schema_prisma_says_so(
    db_name: str, tmp_path: Path
) -> None:
    url = database_url(db_name)
    migrations = project(tmp_path)
    code, out, err = constraints(url, migrations, "migrate")
    assert code == 0, out + err
    deployed = prisma(migrations, url, "migrate", "deploy")
    assert deployed.code == 0 and APPLIED in deployed.text, deployed
    prisma(migrations, url, "migrate", "dev", "--create-only", "--name", "after", "--skip-generate")
    (after,) = [p for p in migrations.iterdir() if p.name.endswith("_after")]
    statements = [
        line for line in (after / "migration.sql").read_text().splitlines() if line.startswith("ALTER")
    ]
    # Prisma sees no CHECK constraint and no partial index: only the columns made NOT NULL.
    assert statements == [
        'ALTER TABLE "ad_images" ALTER COLUMN "file_path" DROP NOT NULL;',
        'ALTER TABLE "ads" ALTER COLUMN "slug" DROP NOT NULL;',
    ]
    shutil.rmtree(after)
    schema = migrations.parent / "schema.prisma"
    text = schema.read_text()
    text = text.replace("slug         String?", "slug         String ").replace(
        "filePath  String?", "filePath  String "
    )
    schema.write_text(text)
    dev = prisma(migrations, url, "migrate", "dev", "--skip-generate", "--skip-seed")
    assert dev.code == 0 and IN_SYNC in dev.text, dev


def test_two_rules_sharing_a_constraint_name_are_one_line_and_exit_2(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text(
        '[rules."ads_slug.format"]\ntable = "ads"\ncolumn = "slug"\ntype = "format"\npattern = "^[a-z]+$"\n'
    )
    done = guard("constraints", "plan", env={"DATABASE_URL": db_url, "GUARD_CONFIG": str(config)})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "guard: rules 'ads.slug.format' and 'ads_slug.format' would both name a constraint "
        "guard_ads_slug_format; rename one of them\n"
    )
