"""Shared fixtures: a real PostgreSQL server, a migrated template database, and a database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from guard.db import servers as server
from guard.db.database import Database
from guard.schema.history import apply_and_record, ensure_migrations_table, read_migrations

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "examples" / "thulobazaar" / "prisma" / "migrations"
SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(dbname: str) -> str:
    """Return the test server's URL with another database name."""
    return server.url_with_database(SERVER_URL, dbname)


def create_database(name: str, template: str | None = None) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(server.create_database(name, template or "template1", utf8=False))


def drop_database(name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(server.drop_database(name))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def migrated_database(prefix: str, migrations: Path) -> Iterator[str]:
    """Create a database with these migrations applied and recorded as Prisma does; drop it after."""
    name = unique_name(prefix)
    create_database(name)
    try:
        with Database(url_for(name)) as db:
            ensure_migrations_table(db)
            for migration in read_migrations(migrations):
                apply_and_record(db, migration)
        yield name
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database with every thulobazaar migration applied and recorded, cloned by each test."""
    with migrated_database("guard_tmpl", MIGRATIONS) as name:
        yield name


@pytest.fixture
def db_name(template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test (its name), dropped afterwards."""
    name = unique_name("guard_test")
    create_database(name, template=template_db)
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def db_url(db_name: str) -> str:
    """The URL of a fresh migrated database for one test, dropped afterwards."""
    return url_for(db_name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with Database(db_url) as database:
        yield database
