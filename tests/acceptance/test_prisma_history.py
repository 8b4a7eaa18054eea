"""Prisma's real CLI as the judge of `guard check migrations`: every state guard reports, both verdicts."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli import guard_json
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

INIT = "20240101000000_init"
FORM = "20240215093000_add_category_form_template"
FIELDS = "20240320120000_add_ad_custom_fields"
FAVORITES = "20240410080000_add_user_favorites"
LAST = "20240502150000_ad_listing_indexes"
UNDO_LAST = (
    'DROP INDEX "ads_active_created_at_idx"',
    'DROP INDEX "ads_lower_title_idx"',
    'ALTER TABLE "ads" DROP CONSTRAINT "ads_price_non_negative"',
)
DEV = ("migrate", "dev", "--skip-generate", "--skip-seed")
# LAST, pending on a database that holds "ads", is linted: two plain CREATE INDEX, a validating CHECK, no
# lock_timeout (README: the migration lint).
LAST_LINT = {
    ("index_not_concurrent", f"migration:{LAST}:2"),
    ("index_not_concurrent", f"migration:{LAST}:5"),
    ("constraint_without_not_valid", f"migration:{LAST}:8"),
    *(("lock_timeout_missing", f"migration:{LAST}:{line}") for line in (2, 5, 8)),
}
MODIFIED = re.compile(r"The migration `([^`]+)` was modified after it was applied\.")


def run_sql(name: str, *statements: str, params: tuple[object, ...] | None = None) -> None:
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode(), params)


def guard_findings(name: str, migrations: Path) -> set[tuple[str, str]]:
    """Return (kind, subject) of every finding of the real `guard check migrations`."""
    env = {"DATABASE_URL": database_url(name), "MIGRATIONS_DIR": str(migrations)}
    code, document = guard_json("check", "migrations", env=env)
    findings = {(f["kind"], f["subject"]) for c in document["checks"] for f in c["findings"]}
    assert code == (1 if findings else 0), document
    return findings


def drop_folder(name: str) -> Callable[[Path], None]:
    return lambda migrations: shutil.rmtree(migrations / name)


def append_line(name: str) -> Callable[[Path], None]:
    def edit(migrations: Path) -> None:
        script = migrations / name / "migration.sql"
        script.write_bytes(script.read_bytes() + b"-- tweaked after it was applied\n")

    return edit


def empty_folder(migrations: Path) -> None:
    (migrations / "20240601000000_empty_folder").mkdir()


def scratch_folder(migrations: Path) -> None:
    (migrations / ".scratch").mkdir()
    (migrations / ".scratch" / "notes.sql").write_text("-- ideas\n")


@dataclass(frozen=True)
class State:
    """A history state: how to make it, what guard reports, and what Prisma prints for it."""

    guard: set[tuple[str, str]]
    command: tuple[str, ...]
    code: int
    says: str
    sql: tuple[str, ...] = ()
    edit: Callable[[Path], None] | None = None


def deleted_row(name: str) -> str:
    return f"DELETE FROM _prisma_migrations WHERE migration_name = '{name}'"


STATES = {
    "pending": State(
        {("migration_pending", f"migration:{LAST}"), *LAST_LINT},
        ("migrate", "status"),
        1,
        f"Following migration have not yet been applied:\n{LAST}\n",
        sql=(*UNDO_LAST, deleted_row(LAST)),
    ),
    "failed": State(
        {("migration_failed", f"migration:{LAST}")},
        ("migrate", "status"),
        1,
        f"Following migration have failed:\n{LAST}\n",
        sql=(
            "UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0,"
            f" logs = 'ERROR: boom' WHERE migration_name = '{LAST}'",
        ),
    ),
    # `migrate resolve --rolled-back` needs the native engine, so the row is rolled back by SQL. Prisma's
    # status does not list it; deploy applies it again, which is what guard's "pending" says.
    "rolled back": State(
        {("migration_pending", f"migration:{LAST}"), *LAST_LINT},
        ("migrate", "deploy"),
        0,
        f"The following migration(s) have been applied:\nmigrations/\n  └─ {LAST}/\n",
        sql=(
            *UNDO_LAST,
            "UPDATE _prisma_migrations SET finished_at = NULL, rolled_back_at = now()"
            f" WHERE migration_name = '{LAST}'",
        ),
    ),
    # Prisma's status does not see an unknown row; `migrate dev` does.
    "unknown": State(
        {("migration_unknown", f"migration:{LAST}")},
        DEV,
        130,
        "applied to the database but missing from the local migrations directory: " + LAST,
        edit=drop_folder(LAST),
    ),
    # Prisma's status and deploy do not compare checksums; `migrate dev` does.
    "edited": State(
        {("migration_edited", f"migration:{FAVORITES}")},
        DEV,
        130,
        f"The migration `{FAVORITES}` was modified after it was applied.",
        edit=append_line(FAVORITES),
    ),
    # One finding for guard, every folder unapplied for Prisma.
    "table missing": State(
        {("migrations_table_missing", "table:_prisma_migrations")},
        ("migrate", "status"),
        1,
        f"Following migrations have not yet been applied:\n{INIT}\n{FORM}\n{FIELDS}\n{FAVORITES}\n{LAST}\n",
        sql=("DROP TABLE _prisma_migrations",),
    ),
    "empty folder": State(
        {("migration_file_missing", "migration:20240601000000_empty_folder")},
        ("migrate", "status"),
        1,
        "Following migration have not yet been applied:\n20240601000000_empty_folder\n",
        edit=empty_folder,
    ),
    "stray .scratch": State(
        {("migration_file_missing", "migration:.scratch")},
        ("migrate", "deploy"),
        1,
        "Error: P3015\nCould not find the migration file at migration.sql.",
        edit=scratch_folder,
    ),
}


@pytest.mark.parametrize("state", list(STATES))
def test_prisma_and_guard_agree_on_each_history_state(db_name: str, tmp_path: Path, state: str) -> None:
    case = STATES[state]
    migrations = project(tmp_path)
    run_sql(db_name, *case.sql)
    if case.edit is not None:
        case.edit(migrations)
    assert guard_findings(db_name, migrations) == case.guard
    verdict = prisma(migrations, database_url(db_name), *case.command)
    assert verdict.code == case.code and case.says in verdict.text, verdict


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unpadded(data: bytes) -> str:
    """Render a SHA-256 the way an old Prisma did: hex bytes without zero padding."""
    return "".join(f"{byte:x}" for byte in hashlib.sha256(data).digest())


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def one_line_lf(data: bytes) -> bytes:
    """Return the all-CRLF file with its first line ending changed back to LF."""
    return crlf(data).replace(b"\r\n", b"\n", 1)


def one_line_crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n", 1)


def same(data: bytes) -> bytes:
    return data


# migration -> (what the file becomes, what the stored checksum becomes; both from the applied file)
Rewrite = tuple[Callable[[bytes], bytes], Callable[[bytes], str]]
CHECKSUM_CASES: dict[str, tuple[dict[str, Rewrite], set[str]]] = {
    "accepted": (
        {
            INIT: (same, unpadded),  # 62 hex digits: an old row
            FORM: (same, lambda d: sha(crlf(d))),  # stored CRLF, file LF
            FIELDS: (crlf, lambda d: sha(crlf(crlf(d)))),  # LF->CRLF on the CRLF file: CR CR LF
            FAVORITES: (crlf, sha),  # file now CRLF
            LAST: (one_line_crlf, sha),  # one line CRLF: CRLF->LF gives the original back
        },
        set(),
    ),
    "edited": (
        {
            INIT: (same, lambda d: sha(d).upper()),
            FAVORITES: (one_line_lf, lambda d: sha(crlf(d))),  # stored CRLF, one line now LF
        },
        {INIT, FAVORITES},
    ),
}


@pytest.mark.parametrize("verdict", list(CHECKSUM_CASES))
def test_prisma_and_guard_agree_on_which_checksums_are_edits(
    db_name: str, tmp_path: Path, verdict: str
) -> None:
    rewrites, edited = CHECKSUM_CASES[verdict]
    migrations = project(tmp_path)
    for name, (rewrite_file, stored) in rewrites.items():
        script = migrations / name / "migration.sql"
        applied = script.read_bytes()
        script.write_bytes(rewrite_file(applied))
        sql = "UPDATE _prisma_migrations SET checksum = %s WHERE migration_name = %s"
        run_sql(db_name, sql, params=(stored(applied), name))
    guard_found = guard_findings(db_name, migrations)
    judged = prisma(migrations, database_url(db_name), *DEV)
    assert set(MODIFIED.findall(judged.text)) == edited, judged
    assert judged.code == (130 if edited else 0), judged
    assert guard_found == {("migration_edited", f"migration:{name}") for name in edited}
