"""A migrations folder that uses every object type drift compares, and a database built from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import create_database, drop_database, migrated_database, unique_name, url_for

from guard.checks.drift import DriftReport, detect
from guard.config.settings import Settings
from guard.db.database import Database
from guard.schema.history import read_migrations, replay
from guard.schema.shadow import shadow_database
from guard.schema.snapshot import Snapshot, read_snapshot

RICH_MIGRATIONS = {
    "20240101000000_init": """
CREATE EXTENSION IF NOT EXISTS "citext";
CREATE TYPE "Status" AS ENUM ('draft', 'active', 'sold');
CREATE TYPE "Color" AS ENUM ('red', 'green');
CREATE SEQUENCE "invoice_no_seq" START 1000 INCREMENT 5;
CREATE TABLE "users" (
    "id" INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "email" CITEXT NOT NULL UNIQUE,
    "age" INTEGER CHECK ("age" >= 18),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT now()
);
CREATE TABLE "items" (
    "id" SERIAL PRIMARY KEY,
    "owner_id" INTEGER NOT NULL REFERENCES "users"("id") ON DELETE CASCADE,
    "title" TEXT NOT NULL,
    "status" "Status" NOT NULL DEFAULT 'draft',
    "price_cents" INTEGER NOT NULL DEFAULT 0,
    "price" NUMERIC GENERATED ALWAYS AS ("price_cents" / 100.0) STORED,
    "invoice_no" BIGINT DEFAULT nextval('invoice_no_seq'),
    "updated_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK ("price_cents" >= 0)
);
""",
    "20240201000000_search": """
CREATE INDEX ON "items" (lower("title"));
CREATE INDEX "items_active_idx" ON "items" ("updated_at" DESC) WHERE "status" = 'active';
CREATE UNIQUE INDEX "items_owner_title_key" ON "items" ("owner_id", "title");
CREATE TABLE "bookings" (
    "id" SERIAL PRIMARY KEY,
    "room" INTEGER NOT NULL,
    "slot" BOX NOT NULL,
    EXCLUDE USING gist ("slot" WITH &&)
);
""",
    "20240301000000_logic": """
CREATE FUNCTION "touch_updated_at"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER "items_touch" BEFORE UPDATE ON "items"
    FOR EACH ROW EXECUTE FUNCTION "touch_updated_at"();
CREATE VIEW "active_items" AS SELECT "id", "title" FROM "items" WHERE "status" = 'active';
CREATE MATERIALIZED VIEW "item_counts" AS
    SELECT "owner_id", count(*) AS "n" FROM "items" GROUP BY "owner_id";
CREATE UNIQUE INDEX "item_counts_owner_idx" ON "item_counts" ("owner_id");
CREATE EXTENSION IF NOT EXISTS "pg_trgm";
CREATE INDEX "items_title_trgm_idx" ON "items" USING gin ("title" gin_trgm_ops);
""",
}


def write_migrations(folder: Path, scripts: dict[str, str]) -> Path:
    """Write Prisma-style `<name>/migration.sql` folders and return the folder."""
    for name, text in scripts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "migration.sql").write_text(text.lstrip(), encoding="utf-8")
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    return folder


@pytest.fixture(scope="session")
def rich_migrations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_migrations(tmp_path_factory.mktemp("rich") / "migrations", RICH_MIGRATIONS)


@pytest.fixture(scope="session")
def rich_template(rich_migrations: Path) -> Iterator[str]:
    """A database built and recorded by the rich migrations, cloned by each test."""
    with migrated_database("guard_rich_tmpl", rich_migrations) as name:
        yield name


@pytest.fixture(scope="session")
def rich_expected(rich_template: str, rich_migrations: Path) -> Snapshot:
    """The schema the rich migrations build, replayed once into a shadow database."""
    with shadow_database(url_for(rich_template)) as shadow:
        assert replay(shadow, read_migrations(rich_migrations)) is None
        return read_snapshot(shadow)


@pytest.fixture
def rich_url(rich_template: str) -> Iterator[str]:
    name = unique_name("guard_rich")
    create_database(name, template=rich_template)
    try:
        yield url_for(name)
    finally:
        drop_database(name)


def settings_for(url: str, migrations: Path, **extra: object) -> Settings:
    return Settings(database_url=url, migrations_dir=migrations, **extra)  # type: ignore[arg-type]


def drift_of(url: str, migrations: Path, **extra: object) -> DriftReport:
    return detect(settings_for(url, migrations, **extra))


def kinds_and_subjects(report: DriftReport) -> set[tuple[str, str]]:
    return {(f.kind, f.subject) for f in report.findings()}


def shadow_databases() -> set[str]:
    with Database(url_for("postgres")) as db:
        rows = db.fetch_all("SELECT datname FROM pg_database WHERE datname LIKE 'guard\\_shadow\\_%'")
    return {str(r[0]) for r in rows}
