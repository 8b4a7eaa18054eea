"""What a database holds outside any dump: its settings, owner, grants, comment and connection limit.

A restore over a live database builds a new one, so these are read from the old one and given to the
new one; only the oid cannot be kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from guard.db.database import Database

# Settings whose value is a list: stored as `a, "b c"`, set again element by element.
LIST_SETTINGS = frozenset(
    {"search_path", "temp_tablespaces", "local_preload_libraries", "session_preload_libraries"}
)
PRIVILEGES = {"CREATE": sql.SQL("CREATE"), "CONNECT": sql.SQL("CONNECT"), "TEMPORARY": sql.SQL("TEMPORARY")}

READ = (
    "SELECT oid, pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'), datconnlimit,"
    " datacl IS NULL FROM pg_database WHERE datname = %s"
)
GRANTS = (
    "SELECT pg_get_userbyid(nullif(a.grantee, 0)), a.privilege_type, a.is_grantable"
    " FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1 NULLS FIRST, 2"
)
SETTINGS = (
    "SELECT pg_get_userbyid(nullif(s.setrole, 0)), c.setting"
    " FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,"
    " unnest(s.setconfig) WITH ORDINALITY AS c(setting, n)"
    " WHERE d.datname = %s ORDER BY s.setrole, c.n"
)
SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"


@dataclass(frozen=True)
class Grant:
    """One privilege on the database: to a role, or to PUBLIC when grantee is None."""

    grantee: str | None
    privilege: str
    grantable: bool


@dataclass(frozen=True)
class RoleSetting:
    """One `ALTER DATABASE ... SET` (role None) or `ALTER ROLE ... IN DATABASE ... SET`, as stored."""

    role: str | None
    name: str
    value: str


@dataclass(frozen=True)
class DatabaseProperties:
    """The database-level properties of one database, as read from the catalogs."""

    oid: int
    owner: str
    comment: str | None
    connection_limit: int
    grants: tuple[Grant, ...] | None  # None: never granted or revoked, the default privileges
    settings: tuple[RoleSetting, ...]

    def summary(self) -> str:
        """Say in a few words what is carried over."""
        grants = "default grants" if self.grants is None else f"{len(self.grants)} grants"
        comment = "its comment" if self.comment is not None else "no comment"
        return f"owner {self.owner}, {len(self.settings)} settings, {grants}, {comment}"


def read_properties(server: Database, name: str) -> DatabaseProperties | None:
    """Read a database's properties; None when there is no such database."""
    row = server.fetch_one(READ, (name,))
    if row is None:
        return None
    grants = None if row[4] else tuple(Grant(*g) for g in server.fetch_all(GRANTS, (name,)))
    settings = tuple(
        RoleSetting(role, *setting.split("=", 1)) for role, setting in server.fetch_all(SETTINGS, (name,))
    )
    return DatabaseProperties(int(row[0]), str(row[1]), row[2], int(row[3]), grants, settings)


def count_sessions(server: Database, name: str) -> int:
    """Count the sessions connected to a database, other than this one."""
    row = server.fetch_one(SESSIONS, (name,))
    return int(row[0]) if row else 0


def apply_properties(server: Database, name: str, props: DatabaseProperties) -> None:
    """Give a database another's owner, connection limit, grants, comment and settings."""
    for statement in statements(name, props):
        server.execute(statement)


def statements(name: str, props: DatabaseProperties) -> list[sql.Composed]:
    """Return the statements that give database `name` these properties."""
    db = sql.Identifier(name)
    out = [
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(props.owner)),
        sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(db, sql.Literal(props.connection_limit)),
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(props.comment)),
    ]
    if props.grants is not None:
        out += _grants(db, props.owner, props.grants)
    out += [_setting(db, s) for s in props.settings]
    return out


def _grants(db: sql.Identifier, owner: str, grants: tuple[Grant, ...]) -> list[sql.Composed]:
    """Revoke the defaults (PUBLIC's and the owner's), then grant exactly what was granted."""
    out = [
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(owner)),
    ]
    for grant in grants:
        who = sql.SQL("PUBLIC") if grant.grantee is None else sql.Identifier(grant.grantee)
        option = sql.SQL(" WITH GRANT OPTION") if grant.grantable else sql.SQL("")
        out.append(
            sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(PRIVILEGES[grant.privilege], db, who, option)
        )
    return out


def _setting(db: sql.Identifier, setting: RoleSetting) -> sql.Composed:
    name = sql.SQL(".").join(sql.Identifier(part) for part in setting.name.split("."))
    values = split_list(setting.value) if setting.name.lower() in LIST_SETTINGS else [setting.value]
    value = sql.SQL(", ").join(sql.Literal(v) for v in values)
    if setting.role is None:
        return sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, name, value)
    return sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
        sql.Identifier(setting.role), db, name, value
    )


def split_list(text: str) -> list[str]:
    """Split a stored list setting (`"$user", public`) into its elements, unquoting quoted ones."""
    items: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        item = ""
        if i < n and text[i] == '"':
            i += 1
            while i < n and not (text[i] == '"' and text[i + 1 : i + 2] != '"'):
                item += text[i]
                i += 2 if text[i] == '"' else 1
            i += 1
        else:
            while i < n and text[i] != ",":
                item += text[i]
                i += 1
            item = item.rstrip()
        items.append(item)
        while i < n and text[i] != ",":
            i += 1
        i += 1
    return items
