"""Renamed indexes and keys, judged by Prisma's `migrate dev`: the names Prisma manages are drift to both."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import guard_json
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

DEV = ("migrate", "dev", "--skip-generate", "--skip-seed")
DRIFT = "Drift detected: Your database schema is not in sync with your migration history."
IN_SYNC = "Already in sync, no schema change or pending migration was found."
# change -> (guard's finding, its repair, what Prisma's `migrate dev` says)
CASES = {
    "index": (
        'ALTER INDEX "ads_user_id_idx" RENAME TO "ads_user_id_idx1"',
        ("index_renamed", "index:ads_user_id_idx"),
        'ALTER INDEX "public"."ads_user_id_idx1" RENAME TO "ads_user_id_idx";',
        "Renamed index `ads_user_id_idx` to `ads_user_id_idx1`",
    ),
    "unique key": (
        'ALTER INDEX "users_email_key" RENAME TO "users_email_key1"',
        ("index_renamed", "index:users_email_key"),
        'ALTER INDEX "public"."users_email_key1" RENAME TO "users_email_key";',
        "Renamed index `users_email_key` to `users_email_key1`",
    ),
    "foreign key": (
        'ALTER TABLE "ads" RENAME CONSTRAINT "ads_user_id_fkey" TO "ads_user_id_fkey1"',
        ("constraint_renamed", "constraint:ads.ads_user_id_fkey"),
        'ALTER TABLE "public"."ads" RENAME CONSTRAINT "ads_user_id_fkey1" TO "ads_user_id_fkey";',
        'Renamed the foreign key "ads_user_id_fkey" to "ads_user_id_fkey1"',
    ),
    "primary key": (
        'ALTER TABLE "users" RENAME CONSTRAINT "users_pkey" TO "users_pkey1"',
        ("constraint_renamed", "constraint:users.users_pkey"),
        'ALTER TABLE "public"."users" RENAME CONSTRAINT "users_pkey1" TO "users_pkey";',
        "Renamed the primary key on columns (id)",
    ),
}
# Prisma does not manage these names (an expression index, a generated CHECK name): not drift to either.
ACCIDENTS = (
    'ALTER INDEX "ads_lower_title_idx" RENAME TO "ads_lower_title_idx1"',
    'ALTER TABLE "ads" ADD CONSTRAINT "ads_price_check" CHECK ("price" < 10000000)',
    'ALTER TABLE "ads" RENAME CONSTRAINT "ads_price_check" TO "ads_price_check1"',
)


def run_sql(name: str, *statements: str) -> None:
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def drift(name: str, migrations: Path) -> dict[tuple[str, str], str]:
    """Return (kind, subject) -> repair SQL of every finding of the real `guard check drift`."""
    env = {"DATABASE_URL": database_url(name), "MIGRATIONS_DIR": str(migrations)}
    code, document = guard_json("check", "drift", env=env)
    found = {(f["kind"], f["subject"]): f["sql"] for c in document["checks"] for f in c["findings"]}
    assert code == (1 if found else 0), document
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_prisma_and_guard_both_see_a_renamed_name_prisma_manages(
    db_name: str, tmp_path: Path, case: str
) -> None:
    change, finding, repair, says = CASES[case]
    migrations = project(tmp_path)
    run_sql(db_name, change)
    assert drift(db_name, migrations) == {finding: repair}
    verdict = prisma(migrations, database_url(db_name), *DEV)
    assert verdict.code == 130 and DRIFT in verdict.text and says in verdict.text, verdict
    run_sql(db_name, repair)
    assert drift(db_name, migrations) == {}


def test_names_prisma_does_not_manage_stay_accidents_for_both(db_name: str, tmp_path: Path) -> None:
    migrations = project(tmp_path)
    run_sql(db_name, *ACCIDENTS[:2])
    migrations_with_check = migrations / "20240601000000_price_cap"
    migrations_with_check.mkdir()
    (migrations_with_check / "migration.sql").write_text(ACCIDENTS[1] + ";\n")
    deployed = prisma(
        migrations, database_url(db_name), "migrate", "resolve", "--applied", migrations_with_check.name
    )
    assert deployed.code == 0, deployed
    run_sql(db_name, ACCIDENTS[2])
    assert drift(db_name, migrations) == {}
    verdict = prisma(migrations, database_url(db_name), *DEV)
    assert verdict.code == 0 and IN_SYNC in verdict.text, verdict
