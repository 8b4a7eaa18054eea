"""Cases the migration lint's unit and PostgreSQL tests share: the constraint rollout, type changes."""

from __future__ import annotations

TIMEOUT = "SET lock_timeout = '2s';\n"

NOT_VALID = (
    TIMEOUT
    + 'ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_slug_required"\n'
    + '  CHECK ("slug" IS NOT NULL AND btrim("slug") <> \'\') NOT VALID;\n'
    + 'ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_slug_format"\n'
    + "  CHECK (\"slug\" ~ '^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$') NOT VALID;\n"
    + 'ALTER TABLE "ad_images" ADD CONSTRAINT "guard_ad_images_ad_id_references"\n'
    + '  FOREIGN KEY ("ad_id") REFERENCES "ads" ("id") NOT VALID;\n'
)
UNIQUE = (
    "-- guard: ads.slug.unique\n"
    'CREATE UNIQUE INDEX CONCURRENTLY "guard_ads_slug_unique" ON "ads" ("slug")\n'
    "  WHERE btrim(\"slug\") <> '';\n"
)
VALIDATE = (
    TIMEOUT
    + 'ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_slug_required";\n'
    + 'ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_slug_format";\n'
    + 'ALTER TABLE "ad_images" VALIDATE CONSTRAINT "guard_ad_images_ad_id_references";\n'
    + 'ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;\n'
)
# (folder name, migration.sql), named as `prisma migrate dev --create-only` names folders
ROLLOUT = (
    ("20260101000000_guard_constraints_not_valid", NOT_VALID),
    ("20260101000001_guard_unique_ads_slug", UNIQUE),
    ("20260101000002_guard_constraints_validate", VALIDATE),
)

# (from, to, rewrites): PostgreSQL's own verdicts for these are checked in
# tests/integration/test_lint_postgres.py::test_rewrite_verdicts_match_postgresql.
TYPE_CHANGES = [
    ("varchar(10)", "varchar(20)", False),
    ("varchar(20)", "varchar(10)", True),
    ("varchar(10)", "varchar", False),
    ("varchar", "varchar(10)", True),
    ("varchar(10)", "text", False),
    ("text", "varchar", False),
    ("text", "varchar(10)", True),
    ("int", "bigint", True),
    ("bigint", "int", True),
    ("text", "int USING c::int", True),
    ("numeric(10,2)", "numeric(12,2)", False),
    ("numeric(10,2)", "numeric(12,3)", True),
    ("numeric(10,2)", "numeric", False),
    ("numeric", "numeric(10,2)", True),
    ("timestamp(3)", "timestamp(6)", False),
    ("timestamp(3)", "timestamp", False),
    ("timestamp", "timestamp(3)", True),
    ("timestamp(3)", "timestamp(1)", True),
    ("char(3)", "char(5)", True),
    ("int", "int", False),
    ("varchar(300)", "varchar(300)", False),
    ("json", "jsonb", True),
    ("cidr", "inet", False),
    ("varchar(10)[]", "varchar(10)[]", False),
    ("bit(3)", "bit(5)", True),
    ("varbit(3)", "varbit(5)", False),
    ("time(2)", "time(4)", False),
    ("char(3)", "text", True),
    ("varchar(10)", "varchar(20) USING c::varchar(20)", False),
    ("varchar(10)", "text USING lower(c)", True),
    ("integer", "int4", False),
]
