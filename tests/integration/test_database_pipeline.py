"""The seam's pipelined transaction: one round trip per read, and all or nothing like any transaction."""

from __future__ import annotations

import psycopg
import pytest

from guard.db.database import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def table(db: Database) -> Database:
    db.execute("CREATE TABLE piped (n integer PRIMARY KEY)")
    return db


def _count(url: str) -> int:
    with Database(url) as other:
        row = other.fetch_one("SELECT count(*) FROM piped")
    assert row is not None
    return int(row[0])


def test_statements_sent_before_a_read_commit_together_and_reads_see_them(table: Database) -> None:
    with table.pipelined_transaction():
        table.execute("INSERT INTO piped VALUES (1)")
        sent = table.submit("INSERT INTO piped VALUES (2) RETURNING n")
        counted = table.submit("SELECT count(*) FROM piped")
        assert counted.one() == (2,)
        assert sent.all() == [(2,)]
    assert _count(table.url) == 2


def test_a_failing_statement_commits_nothing_and_the_seam_connects_again(table: Database) -> None:
    with pytest.raises(psycopg.errors.UniqueViolation), table.pipelined_transaction():
        table.execute("INSERT INTO piped VALUES (1)")
        table.submit("INSERT INTO piped VALUES (1)").all()
    assert _count(table.url) == 0
    assert table.fetch_one("SELECT 1") == (1,)  # a fresh connection, not one stuck in a failed pipeline


def test_an_error_in_python_after_statements_were_sent_commits_nothing(table: Database) -> None:
    with pytest.raises(RuntimeError), table.pipelined_transaction():
        table.execute("INSERT INTO piped VALUES (1)")
        assert table.submit("SELECT count(*) FROM piped").one() == (1,)
        raise RuntimeError("the check failed after its statements ran")
    assert _count(table.url) == 0


def test_a_failure_at_commit_is_raised(table: Database) -> None:
    table.execute("CREATE TABLE piped_ref (n integer REFERENCES piped (n) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(psycopg.errors.ForeignKeyViolation), table.pipelined_transaction():
        table.execute("INSERT INTO piped VALUES (1)")
        table.execute("INSERT INTO piped_ref VALUES (7)")  # checked only at COMMIT
    assert _count(table.url) == 0
