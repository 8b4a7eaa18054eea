"""A `?schema=NAME` URL, judged by Prisma: the database its `migrate deploy` made passes every guard check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import guard, guard_json
from tests.conftest import create_database, drop_database, unique_name
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

SCHEMA = "shop"
SHOP_TABLES = """
SELECT count(*) FILTER (WHERE table_schema = 'shop'), count(*) FILTER (WHERE table_schema = 'public')
FROM information_schema.tables WHERE table_name IN ('ads', '_prisma_migrations')
"""

SEED = """
INSERT INTO shop.users (email) VALUES ('a@example.com');
INSERT INTO shop.categories (name, slug) VALUES ('Cars', 'cars');
INSERT INTO shop.ads (title, slug, category_id, user_id) VALUES ('Car', 'a-car-1', 1, 1);
"""
BAD_SLUG = "UPDATE shop.ads SET slug = 'Not A Slug' WHERE id = 1"


@pytest.fixture
def shop_db(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fresh database that Prisma's own `migrate deploy` built with `?schema=shop`."""
    name = unique_name("guard_prisma_shop")
    create_database(name)
    try:
        migrations = project(tmp_path)
        deployed = prisma(migrations, database_url(name, SCHEMA), "migrate", "deploy")
        assert deployed.code == 0 and "All migrations have been successfully applied." in deployed.text
        yield name, migrations
    finally:
        drop_database(name)


def findings(name: str, migrations: Path, check: str) -> set[tuple[str, str]]:
    """Return (kind, subject) of every finding of the real `guard check <check>` on the shop schema."""
    uploads = migrations.parent / "uploads"
    (uploads / "uploads" / "ads").mkdir(parents=True, exist_ok=True)
    env = {
        "DATABASE_URL": database_url(name, SCHEMA),
        "MIGRATIONS_DIR": str(migrations),
        "UPLOADS_ROOT": str(uploads),
    }
    code, document = guard_json("check", check, env=env)
    found = {(f["kind"], f["subject"]) for c in document["checks"] for f in c["findings"]}
    assert code == (1 if found else 0), document
    return found


def test_a_database_prisma_deployed_into_a_schema_passes_every_check(shop_db: tuple[str, Path]) -> None:
    name, migrations = shop_db
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        assert conn.execute(SHOP_TABLES).fetchone() == (2, 0)  # Prisma really deployed into shop
        conn.execute(SEED)
    assert findings(name, migrations, "all") == set()
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        conn.execute(BAD_SLUG)
    assert ("ads.slug.format", "ads:1") in findings(name, migrations, "integrity")


def test_baseline_records_a_schema_only_copy_in_that_schema(shop_db: tuple[str, Path]) -> None:
    name, migrations = shop_db
    url = database_url(name, SCHEMA)
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        conn.execute("DROP TABLE shop._prisma_migrations")
    env = {"DATABASE_URL": url, "MIGRATIONS_DIR": str(migrations)}
    done = guard("migrations", "baseline", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(database_url(name)) as conn:
        assert conn.execute(SHOP_TABLES).fetchone() == (2, 0)
    assert findings(name, migrations, "migrations") == set()
    verdict = prisma(migrations, url, "migrate", "status")
    assert verdict.code == 0 and "Database schema is up to date!" in verdict.text, verdict


def test_a_renamed_index_in_the_schema_is_drift_to_both(shop_db: tuple[str, Path]) -> None:
    name, migrations = shop_db
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        conn.execute('ALTER INDEX "shop"."ads_user_id_idx" RENAME TO "ads_user_id_idx1"')
    assert findings(name, migrations, "drift") == {("index_renamed", "index:shop.ads_user_id_idx")}
    verdict = prisma(
        migrations, database_url(name, SCHEMA), "migrate", "dev", "--skip-generate", "--skip-seed"
    )
    assert verdict.code == 130 and "Renamed index `ads_user_id_idx` to `ads_user_id_idx1`" in verdict.text, (
        verdict
    )
