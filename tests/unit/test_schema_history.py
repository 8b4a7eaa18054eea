"""Pure history logic: which folder or row is pending, failed, edited or unknown."""

from __future__ import annotations

from pathlib import Path

from guard.checks.migrations import assess
from guard.schema.history import MigrationFile, MigrationRecord, applied_migrations

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
