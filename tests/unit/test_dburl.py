"""DATABASE_URL in the forms apps already use: libpq's, Prisma's ?schema=, SQLAlchemy's driver URLs."""

from __future__ import annotations

import psycopg
import pytest

from guard.config.dburl import libpq_conninfo
from guard.config.settings import Settings
from guard.errors import ConfigError


def _parts(url: str) -> dict[str, object]:
    return psycopg.conninfo.conninfo_to_dict(libpq_conninfo(url))


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@db:5432/app?sslmode=require", "host=db user=u dbname=app", "postgres://db/app"],
)
def test_what_libpq_reads_is_passed_through_untouched(url: str) -> None:
    assert libpq_conninfo(url) == url


def test_prisma_schema_becomes_the_search_path_and_pool_settings_are_dropped() -> None:
    parts = _parts("postgresql://u:s3cret@db:6543/market?schema=public&connection_limit=5&pool_timeout=10")
    assert parts == {
        "host": "db",
        "port": "6543",
        "user": "u",
        "password": "s3cret",
        "dbname": "market",
        "options": "-csearch_path=public",
    }


def test_a_schema_name_that_needs_quoting_is_quoted_and_escaped_for_options() -> None:
    parts = _parts('postgresql://u@db/market?schema=My Shop"s&sslmode=disable')
    assert parts["sslmode"] == "disable"
    assert parts["options"] == '-csearch_path="My\\ Shop""s"'


def test_sqlalchemy_driver_urls_are_read() -> None:
    parts = _parts("postgresql+psycopg://u:pw@db/app?application_name=web")
    assert parts == {"host": "db", "user": "u", "password": "pw", "dbname": "app", "application_name": "web"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:hunter2@db/app", "names a 'mysql' database; guard needs PostgreSQL"),
        ("not a url", "is not a valid connection string"),
        ("postgresql+psycopg://u:hunter2@db:notaport/app", "is not a valid database URL"),
    ],
)
def test_bad_urls_are_one_line_config_errors_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(database_url=url).require_database_url()
    text = str(caught.value)
    assert message in text and "hunter2" not in text and "\n" not in text
    assert text.startswith("DATABASE_URL ")


def test_a_url_with_an_undecodable_byte_is_a_config_error() -> None:
    """Found by bench/fuzz.py (dburl): os.environ turns a byte that is not UTF-8 into a surrogate,
    which libpq's parser could not encode (UnicodeEncodeError, a traceback)."""
    with pytest.raises(ConfigError, match=r"^DATABASE_URL is not valid UTF-8$"):
        libpq_conninfo("postgresql://u:hunter2@db/caf\udce9")


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://u:hunter 2@db:notaport/app", "postgresql+psycopg://u:hunter@2@db:x/app"]
)
def test_a_password_with_a_space_or_an_at_sign_is_not_shown(url: str) -> None:
    """Found by bench/fuzz.py (dburl): the message showed the URL; the redaction missed such a password."""
    with pytest.raises(ConfigError, match="is not a valid database URL") as caught:
        libpq_conninfo(url)
    assert "hunter" not in str(caught.value)


def test_a_url_that_decodes_to_a_nul_byte_is_a_config_error() -> None:
    """Found by bench/fuzz.py (dburl): '%00' in a URL became a conninfo libpq itself cannot read."""
    with pytest.raises(ConfigError, match=r"^DATABASE_URL is not a valid database URL$"):
        libpq_conninfo("postgresql:///%00%0A")
