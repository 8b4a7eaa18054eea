"""The PostgreSQL server behind a connection string: its other databases, named, created and dropped.

Shadow databases, restore targets, drill scratch copies, demo worlds and test databases all need the
same three things; they are spelled once here, with names always quoted as identifiers.
"""

from __future__ import annotations

import psycopg
from psycopg import sql


def url_with_database(url: str, dbname: str) -> str:
    """Return the same connection string pointing at another database on the same server."""
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def create_database(name: str, template: str = "template0", *, utf8: bool = True) -> sql.Composed:
    """CREATE DATABASE name, from template (template0: empty), in UTF-8 so any file name fits."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)
    )
    return sql.SQL("{} ENCODING 'UTF8'").format(statement) if utf8 else statement


def drop_database(name: str) -> sql.Composed:
    """DROP DATABASE IF EXISTS name, ending its sessions first (PostgreSQL 13+)."""
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
