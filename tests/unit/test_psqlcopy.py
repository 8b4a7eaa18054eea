from __future__ import annotations

import pytest

from guard.db import psqlcopy


def test_whole_lines_split_into_values() -> None:
    assert psqlcopy.lines_of("a\nb c\n") == ["a", "b c"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uploads\\\\ads\\\\x.webp", "uploads\\ads\\x.webp"),
        ("new\\nline", "new\nline"),
        ("tab\\there", "tab\there"),
        ("\\b\\f\\v\\r", "\b\f\v\r"),
        ("\\\\N", "\\N"),
    ],
)
def test_copy_escapes_are_undone(field: str, value: str) -> None:
    assert psqlcopy.unescape(field) == value
    assert psqlcopy.lines_of(field + "\n") == [value]


def test_the_password_goes_in_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psqlcopy.shutil, "which", lambda _: "/usr/bin/psql")
    env = psqlcopy.psql_environment("postgresql://app:s3cret@db.example:6543/shop?sslmode=require")
    assert env is not None
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == ("db.example", "6543", "shop")
    assert (env["PGUSER"], env["PGPASSWORD"], env["PGSSLMODE"]) == ("app", "s3cret", "require")
    assert env["PGCLIENTENCODING"] == "UTF8"


def test_no_psql_or_a_setting_psql_cannot_take_from_the_environment_means_psycopg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(psqlcopy.shutil, "which", lambda _: "/usr/bin/psql")
    assert psqlcopy.psql_environment("host=h dbname=d keepalives=1") is None
    monkeypatch.setattr(psqlcopy.shutil, "which", lambda _: None)
    assert psqlcopy.psql_environment("host=h dbname=d") is None
