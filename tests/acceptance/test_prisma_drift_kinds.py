"""Ten kinds of drift at once, judged by Prisma's `migrate dev`: what guard reports, Prisma reports too.

One database, one `guard check drift --json` and one `prisma migrate dev`: each drift is paired with
guard's finding and the line of Prisma's drift summary that says the same, so a drift one of them
misses, or one it reports that the other does not, fails the test.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import guard_json
from tests.conftest import migrated_database
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

DEV = ("migrate", "dev", "--skip-generate", "--skip-seed")
DRIFT = "Drift detected: Your database schema is not in sync with your migration history."
SUMMARY_START = (
    "It should be understood as the set of changes to get from the expected schema to the actual schema."
)
SUMMARY_END = "We need to reset"
# A migration with an enum, so that a value added to it can drift (thulobazaar has none); schema.prisma
# is left as is: the drift summary compares the migrations with the database, not with the schema.
ENUM_MIGRATION = (
    "20240601000000_ad_condition",
    "-- CreateEnum\nCREATE TYPE \"ad_condition\" AS ENUM ('new', 'used');\n\n"
    '-- AlterTable\nALTER TABLE "ads" ADD COLUMN "condition" "ad_condition";\n',
)
# drift -> (its SQL, guard's finding (kind, subject), the section and line of Prisma's summary)
DRIFTS = {
    "missing column": (
        'ALTER TABLE "ads" DROP COLUMN "description"',
        ("column_missing", "column:ads.description"),
        ("Changed the `ads` table", "[-] Removed column `description`"),
    ),
    "extra column": (
        'ALTER TABLE "users" ADD COLUMN "phone" TEXT',
        ("column_extra", "column:users.phone"),
        ("Changed the `users` table", "[+] Added column `phone`"),
    ),
    "missing table": (
        'DROP TABLE "user_favorites"',
        ("table_missing", "table:user_favorites"),
        ("Removed tables", "user_favorites"),
    ),
    "extra table": (
        'CREATE TABLE "audit_notes" ("id" INTEGER PRIMARY KEY)',
        ("table_extra", "table:audit_notes"),
        ("Added tables", "audit_notes"),
    ),
    "missing foreign key": (
        'ALTER TABLE "ad_images" DROP CONSTRAINT "ad_images_ad_id_fkey"',
        ("constraint_missing", "constraint:ad_images.ad_images_ad_id_fkey"),
        ("Changed the `ad_images` table", "[-] Removed foreign key on columns (ad_id)"),
    ),
    "missing unique index": (
        'DROP INDEX "categories_slug_key"',
        ("index_missing", "index:categories_slug_key"),
        ("Changed the `categories` table", "[-] Removed unique index on columns (slug)"),
    ),
    "column type": (
        'ALTER TABLE "users" ALTER COLUMN "full_name" TYPE TEXT',
        ("column_changed", "column:users.full_name"),
        ("Changed the `users` table", "[*] Altered column `full_name` (type changed)"),
    ),
    "NOT NULL dropped": (
        'ALTER TABLE "ads" ALTER COLUMN "status" DROP NOT NULL',
        ("column_changed", "column:ads.status"),
        ("Changed the `ads` table", "[*] Altered column `status` (changed from Required to Nullable)"),
    ),
    "default changed": (
        'ALTER TABLE "ad_images" ALTER COLUMN "is_primary" SET DEFAULT true',
        ("column_changed", "column:ad_images.is_primary"),
        (
            "Changed the `ad_images` table",
            "[*] Altered column `is_primary` (default changed from `Some(Value(Boolean(false)))` to "
            "`Some(Value(Boolean(true)))`)",
        ),
    ),
    "enum value added": (
        "ALTER TYPE \"ad_condition\" ADD VALUE 'refurbished'",
        ("object_changed", "enum:ad_condition"),
        ("Changed the `ad_condition` enum", "[+] Added variant `refurbished`"),
    ),
}
# Intended (README, Prisma compatibility): a missing table is one finding for guard, while Prisma
# also lists the foreign keys of the table it no longer finds.
PRISMA_ONLY = {
    ("Changed the `user_favorites` table", "[-] Removed foreign key on columns (ad_id)"),
    ("Changed the `user_favorites` table", "[-] Removed foreign key on columns (user_id)"),
}


def drift_summary(text: str) -> set[tuple[str, str]]:
    """Read `migrate dev`'s drift summary as (section, line) pairs: `[+] Added tables` and its `- name`
    items, or `[*] Changed the `ads` table` and each `[-]`, `[+]`, `[*]` line under it."""
    lines = text.split(SUMMARY_START, 1)[1].split(SUMMARY_END, 1)[0].splitlines()
    found: set[tuple[str, str]] = set()
    section = ""
    for line in lines:
        if not line.strip():
            continue
        if not line.startswith(" "):
            section = line.split("] ", 1)[1]
        else:
            found.add((section, line.strip().removeprefix("- ")))
    return found


def test_every_drift_guard_reports_prisma_reports_and_no_other(tmp_path: Path) -> None:
    migrations = project(tmp_path)
    folder, script = ENUM_MIGRATION
    (migrations / folder).mkdir()
    (migrations / folder / "migration.sql").write_text(script)
    with migrated_database("guard_kinds", migrations) as name:
        url = database_url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            for change, _, _ in DRIFTS.values():
                conn.execute(change.encode())
        code, document = guard_json(
            "check", "drift", env={"DATABASE_URL": url, "MIGRATIONS_DIR": str(migrations)}
        )
        verdict = prisma(migrations, url, *DEV)
    guard_found = {(f["kind"], f["subject"]) for c in document["checks"] for f in c["findings"]}
    assert code == 1
    assert guard_found == {finding for _, finding, _ in DRIFTS.values()}
    assert verdict.code == 130 and DRIFT in verdict.text, verdict
    assert drift_summary(verdict.text) == {said for _, _, said in DRIFTS.values()} | PRISMA_ONLY
