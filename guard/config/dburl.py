"""DATABASE_URL as the app already has it: libpq's own forms, Prisma's and SQLAlchemy's URLs.

A Prisma app's `.env` says `postgresql://u:p@host:5432/db?schema=public&connection_limit=5`; libpq
rejects both query parameters. A Python app's says `postgresql+psycopg://...`, which libpq does not
parse at all. Anything libpq accepts is passed through untouched (and SQLAlchemy is not even
imported); anything else is parsed with SQLAlchemy's URL parser and rewritten as a libpq conninfo:
`schema` becomes the session's search_path (Prisma's meaning), libpq's own parameters are kept, and
the rest (Prisma's pool and engine settings) only tune the app's client, so they are dropped.
"""

from __future__ import annotations

import re
from functools import lru_cache

import psycopg

from guard.config.redact import redact
from guard.errors import ConfigError

_POSTGRES = ("postgresql", "postgres")


@lru_cache(maxsize=16)
def libpq_conninfo(url: str, setting: str = "DATABASE_URL") -> str:
    """Return a connection string libpq accepts for `url`, or fail naming `setting` (never the password)."""
    if not _encodes(url):  # os.environ turns bytes that are not UTF-8 into surrogates
        raise ConfigError(f"{setting} is not valid UTF-8")
    try:
        psycopg.conninfo.conninfo_to_dict(url)
        return url
    except psycopg.ProgrammingError as exc:
        if "://" not in url:
            reason = redact(str(exc).strip())
            raise ConfigError(f"{setting} is not a valid connection string: {reason}") from None
    return _from_url(url, setting)


def _from_url(url: str, setting: str) -> str:
    from sqlalchemy.engine.url import make_url  # only for URLs libpq cannot read: it costs ~0.2 s
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not the URL, even redacted: a password with a space or an '@' in it escapes the redaction.
        raise ConfigError(f"{setting} is not a valid database URL") from None
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in _POSTGRES:
        raise ConfigError(f"{setting} names a '{backend}' database; guard needs PostgreSQL")
    known = {bytes(d.keyword).decode() for d in psycopg.pq.Conninfo.get_defaults()}
    params: dict[str, str] = {}
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("user", parsed.username),
        ("password", parsed.password),
        ("dbname", parsed.database),
    ):
        if value is not None and value != "":
            params[key] = str(value)
    options: list[str] = []
    for key, raw in parsed.query.items():
        value = raw[-1] if isinstance(raw, tuple) else raw
        if key == "schema":
            options.append(f"-csearch_path={_options_escape(_quote_identifier(value))}")
        elif key == "options":
            options.insert(0, value)
        elif key in known:
            params[key] = value  # e.g. sslmode, sslrootcert, connect_timeout, application_name, host
    if options:
        params["options"] = " ".join(options)
    try:
        return psycopg.conninfo.make_conninfo(**params)
    except psycopg.ProgrammingError:  # a decoded NUL byte makes a conninfo libpq cannot read
        raise ConfigError(f"{setting} is not a valid database URL") from None


def _quote_identifier(name: str) -> str:
    """Prisma treats the schema name as a quoted identifier (case kept)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _options_escape(value: str) -> str:
    """libpq's `options` splits on spaces; a backslash escapes a space or a backslash."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
