"""Rows that break each default rule, their fix, and the migrations `guard constraints migrate` writes."""

from __future__ import annotations

import shutil
from pathlib import Path

from guard.db.database import Database
from tests.conftest import MIGRATIONS

BROKEN_ROWS = (
    "INSERT INTO users (id, email) VALUES (1, 'a@example.com')",
    "INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')",
    "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES"
    " (1, 'Good', 'honda-city-1', 1, 1), (2, 'Null slug', NULL, 1, 1), (3, 'Blank slug', '   ', 1, 1),"
    " (4, 'Bad format', 'Honda City 4', 1, 1), (5, 'Dup a', 'dup-slug-5', 1, 1),"
    " (6, 'Dup b', 'dup-slug-5', 1, 1), (7, '  ', 'blank-title-7', 1, 1)",
    "SELECT setval('ads_id_seq', 100)",
    "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES"
    " (1, 1, 'a.webp', 'uploads/ads/a.webp'), (2, 1, 'b.webp', NULL)",
)
# The count of each default rule over BROKEN_ROWS.
COUNTS = {
    "ads.slug.required": 2,
    "ads.slug.format": 1,
    "ads.slug.unique": 2,
    "ads.title.required": 1,
    "categories.name.required": 0,
    "ad_images.file_path.required": 1,
    "ad_images.ad_id.references": 0,
}
FIXES = (
    "UPDATE ads SET slug = 'ad-' || id WHERE id IN (2, 3, 4, 6)",
    "UPDATE ads SET title = 'Fixed' WHERE id = 7",
    "UPDATE ad_images SET file_path = 'uploads/ads/b.webp' WHERE id = 2",
)

NOT_VALID_SQL = """\
-- Written by `guard constraints migrate`: the rules as constraints, checked on every new write.
-- NOT VALID: the rows already there are not read under the lock (the validate step reads them).
SET lock_timeout = '500ms';

-- ads.slug.required
ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_slug_required_not_null" CHECK ("slug" IS NOT NULL) NOT VALID;

-- ads.slug.required
ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_slug_required" CHECK (btrim("slug", E' \\t\\r\\n\\f\\013') <> '') NOT VALID;

-- ads.slug.format
ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_slug_format" CHECK ("slug" ~ '^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$') NOT VALID;

-- ads.title.required
ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_title_required" CHECK (btrim("title", E' \\t\\r\\n\\f\\013') <> '') NOT VALID;

-- categories.name.required
ALTER TABLE "categories" ADD CONSTRAINT "guard_categories_name_required" CHECK (btrim("name", E' \\t\\r\\n\\f\\013') <> '') NOT VALID;

-- ad_images.file_path.required
ALTER TABLE "ad_images" ADD CONSTRAINT "guard_ad_images_file_path_required_not_null" CHECK ("file_path" IS NOT NULL) NOT VALID;

-- ad_images.file_path.required
ALTER TABLE "ad_images" ADD CONSTRAINT "guard_ad_images_file_path_required" CHECK (btrim("file_path", E' \\t\\r\\n\\f\\013') <> '') NOT VALID;

RESET lock_timeout;
"""  # noqa: E501
UNIQUE_SQL = """\
-- Written by `guard constraints migrate`: built without blocking writes, alone in its file
-- because PostgreSQL refuses CONCURRENTLY inside a multi-statement query (prisma/orm#14456).
CREATE UNIQUE INDEX CONCURRENTLY "guard_ads_slug_unique" ON "ads" ("slug") WHERE btrim("slug", E' \\t\\r\\n\\f\\013') <> '';
"""  # noqa: E501
VALIDATE_SQL = """\
-- Written by `guard constraints migrate` once no row broke the rules: existing rows are read
-- under a lock the app's writes pass; a validated CHECK (col IS NOT NULL) spares SET NOT NULL a scan.
SET lock_timeout = '500ms';

-- ads.slug.required
ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_slug_required_not_null";

-- ads.slug.required
ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_slug_required";

-- ads.slug.format
ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_slug_format";

-- ads.title.required
ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_title_required";

-- categories.name.required
ALTER TABLE "categories" VALIDATE CONSTRAINT "guard_categories_name_required";

-- ad_images.file_path.required
ALTER TABLE "ad_images" VALIDATE CONSTRAINT "guard_ad_images_file_path_required_not_null";

-- ad_images.file_path.required
ALTER TABLE "ad_images" VALIDATE CONSTRAINT "guard_ad_images_file_path_required";

-- ads.slug.required
ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;

-- ad_images.file_path.required
ALTER TABLE "ad_images" ALTER COLUMN "file_path" SET NOT NULL;

RESET lock_timeout;
"""
# What the app might insert after the rollout, and whether PostgreSQL must take it.
APP_INSERT = "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('New', %s, 1, 1)"
APP_SLUGS = ((None, False), ("", False), ("  \t", False), ("Honda City", False), ("new-ad-200", True))


def run_all(db: Database, statements: tuple[str, ...]) -> None:
    for statement in statements:
        db.execute(statement)


def copy_migrations(tmp_path: Path) -> Path:
    """Return a copy of the thulobazaar migrations that a test may write into."""
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, target)
    return target


def guard_folders(folder: Path) -> list[str]:
    """Return the names of the folders guard wrote, without their timestamps."""
    return [p.name[15:] for p in sorted(folder.iterdir()) if p.is_dir() and "_guard_" in p.name]
