"""Pure history logic: which folder or row is pending, failed, edited or unknown."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from guard.checks.migrations import assess, missing_scripts
from guard.schema.history import (
    MigrationFile,
    MigrationRecord,
    applied_migrations,
    pending_migrations,
    prisma_clock,
)

A = MigrationFile("1_a", Path("1_a/migration.sql"), b"CREATE TABLE a ();\n")
B = MigrationFile("2_b", Path("2_b/migration.sql"), b"CREATE TABLE b ();\n")


def row(name: str, checksum: str, finished: bool = True, rolled_back: bool = False) -> MigrationRecord:
    return MigrationRecord(name, checksum, name, finished, rolled_back)


def kinds(found: list[object]) -> list[tuple[str, str]]:
    return [(f.kind, f.subject) for f in found]  # type: ignore[attr-defined]


def test_states() -> None:
    assert kinds(assess([A, B], None)) == [("migrations_table_missing", "table:_prisma_migrations")]
    assert kinds(assess([A, B], [row("1_a", A.checksum), row("2_b", B.checksum)])) == []
    assert kinds(assess([A, B], [row("1_a", A.checksum)])) == [("migration_pending", "migration:2_b")]
    assert kinds(assess([A], [row("1_a", "0" * 64)])) == [("migration_edited", "migration:1_a")]
    assert kinds(assess([A], [row("1_a", A.checksum, finished=False)])) == [
        ("migration_failed", "migration:1_a")
    ]
    assert kinds(assess([A], [row("1_a", A.checksum, rolled_back=True)])) == [
        ("migration_pending", "migration:1_a")
    ]
    assert kinds(assess([A], [row("1_a", A.checksum), row("9_x", "x")])) == [
        ("migration_unknown", "migration:9_x")
    ]


def test_crlf_checksums_match() -> None:
    crlf = MigrationFile("1_a", A.path, A.content.replace(b"\n", b"\r\n"))
    assert crlf.matches(A.checksum) and A.matches(crlf.checksum)


def test_without_history_every_folder_is_replayed() -> None:
    assert applied_migrations([A, B], None) == [A, B]
    assert applied_migrations([A, B], [row("2_b", B.checksum)]) == [B]


LF = b"CREATE TABLE a ();\nCREATE TABLE b ();\n"
CRLF = LF.replace(b"\n", b"\r\n")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unpadded(data: bytes) -> str:
    return "".join(f"{byte:x}" for byte in hashlib.sha256(data).digest())


@pytest.mark.parametrize(
    ("file", "stored", "matches"),
    [
        (LF, sha(LF), True),
        (CRLF, sha(LF), True),  # the file's CRLF made LF
        (LF, sha(CRLF), True),  # the file's LF made CRLF
        (CRLF, sha(CRLF.replace(b"\n", b"\r\n")), True),  # LF->CRLF on raw text: CR CR LF
        (LF, sha(LF).upper(), False),  # only lower-case hex is Prisma's rendering
        (b"CREATE TABLE a ();\nCREATE TABLE b ();\r\n", sha(CRLF), False),  # some lines changed
        (b"CREATE TABLE a ();\r\nCREATE TABLE b ();\n", sha(LF), True),  # CRLF->LF gives it back
        (LF, sha(LF)[:-1], False),
    ],
    ids=["as-is", "crlf-file", "crlf-stored", "cr-cr-lf", "upper-case", "mixed", "lf-stored-mixed", "short"],
)
def test_checksum_matches_exactly_as_prismas_script_matches_checksum(
    file: bytes, stored: str, matches: bool
) -> None:
    assert MigrationFile("1_a", A.path, file).matches(stored) is matches


def test_an_old_checksum_rendered_without_zero_padding_matches() -> None:
    content = next(c for n in range(100) if len(unpadded(c := LF + b"-- %d\n" % n)) < 64)
    migration = MigrationFile("1_a", A.path, content)
    assert migration.matches(unpadded(content))
    assert migration.matches(unpadded(content.replace(b"\n", b"\r\n")))
    assert not migration.matches(unpadded(content).upper())


def test_a_folder_without_migration_sql_is_reported_and_never_unknown() -> None:
    history = [row("1_a", A.checksum), row("2_b", B.checksum)]
    without = [Path("migrations/2_b")]
    assert kinds(missing_scripts(without)) == [("migration_file_missing", "migration:2_b")]
    assert kinds(assess([A], history, without)) == []
    assert kinds(assess([A], history)) == [("migration_unknown", "migration:2_b")]


def test_baseline_clock_writes_milliseconds_and_never_repeats_a_start() -> None:
    now = prisma_clock()
    assert now.microsecond % 1000 == 0 and now.tzinfo is not None
    later = now + timedelta(seconds=5)
    assert prisma_clock(after=later) == later + timedelta(milliseconds=1)


def test_pending_is_what_deploy_runs_next_and_a_failed_folder_waits_for_resolve() -> None:
    C = MigrationFile("3_c", Path("3_c/migration.sql"), b"SELECT 1;\n")
    assert pending_migrations([A, B, C], None) == [A, B, C]
    history = [row("1_a", A.checksum), row("2_b", B.checksum, finished=False), row("3_c", "x", False, True)]
    assert pending_migrations([A, B, C], history) == [C]
    assert pending_migrations([A, B, C], [*history, row("3_c", C.checksum)]) == []


def test_before_a_deploy_a_pending_folder_is_a_warning() -> None:
    (found,) = assess([A, B], [row("1_a", A.checksum)], pending="warn")
    assert (found.kind, found.severity) == ("migration_pending", "warn")
    assert found.message.endswith("this deploy applies it")
    (plain,) = assess([A, B], [row("1_a", A.checksum)])
    assert plain.severity is None
