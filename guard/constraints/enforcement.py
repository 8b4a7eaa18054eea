"""The database objects that enforce a rule, their stable names, and the statements that add them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psycopg import sql

from guard.config.rules import Rule

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; a longer name would silently become
# another name than the one the migrations and the plan say.
MAX_NAME_BYTES = 63
PREFIX = "guard_"
NOT_NULL_SUFFIX = "_not_null"
PLAIN_ID = re.compile(r"[a-z0-9_.]+")
# Blank means what the integrity check means: nothing left after trimming its BLANK_CHARS. An E''
# string has no \v escape (it would read as "v"), so the vertical tab is written in octal.
BLANK_CHARS = sql.SQL(r"E' \t\r\n\f\013'")

CHECK = "check"
NOT_NULL = "not_null"
FOREIGN_KEY = "foreign_key"
UNIQUE_INDEX = "unique_index"

MISSING = "missing"
NOT_VALID = "not_valid"
VALID = "valid"
INVALID = "invalid"  # an index a failed CREATE INDEX CONCURRENTLY left behind


@dataclass(frozen=True)
class Enforcer:
    """One object that enforces (part of) a rule: a CHECK, NOT NULL, a foreign key or a unique index.

    `name` is the constraint's or index's name (for NOT NULL, the CHECK that proves it, or None when
    the column already is NOT NULL); `definition` is the SQL after the name. `ours` is False for an
    object the app's schema already has (a Prisma foreign key, a unique key, a NOT NULL column).
    """

    rule: str
    kind: str
    table: str
    column: str
    name: str | None
    definition: str
    state: str
    ours: bool = True

    @property
    def label(self) -> str:
        """Say what it is in a few words, as the plan prints it."""
        if self.kind == NOT_NULL:
            proof = f" (after CHECK {self.name})" if self.ours else ""
            return f"NOT NULL {self.table}.{self.column}{proof}"
        kind = {CHECK: "CHECK", FOREIGN_KEY: "FOREIGN KEY", UNIQUE_INDEX: "UNIQUE INDEX"}[self.kind]
        return f"{kind} {self.name}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "table": self.table,
            "column": self.column,
            "name": self.name,
            "definition": self.definition,
            "state": self.state,
            "created_by_guard": self.ours,
        }


def base_name(rule_id: str) -> str:
    """Return the rule's stable object name: guard_<id with dots as underscores>, hashed when it must be.

    A plain id (lower-case letters, digits, `_` and `.`) that fits reads as itself; any other id, or
    one too long for the longest suffix within 63 bytes, keeps a readable prefix and gains 8 hex
    digits of its SHA-256, so two ids never share a name by being cut or folded alike.
    """
    room = MAX_NAME_BYTES - len(NOT_NULL_SUFFIX)
    plain = PREFIX + rule_id.replace(".", "_")
    if PLAIN_ID.fullmatch(rule_id) and len(plain) <= room:
        return plain
    digest = hashlib.sha256(rule_id.encode("utf-8")).hexdigest()[:8]
    folded = PREFIX + re.sub(r"[^a-z0-9_]", "_", rule_id.lower())
    return f"{folded[: room - len(digest) - 1]}_{digest}"


def not_null_name(rule_id: str) -> str:
    return base_name(rule_id) + NOT_NULL_SUFFIX


def column(name: str) -> sql.Composable:
    return sql.Identifier(name)


def not_blank(name: str) -> sql.Composable:
    return sql.SQL("btrim({}, {}) <> ''").format(column(name), BLANK_CHARS)


def text(composable: sql.Composable) -> str:
    return composable.as_string(None)


def check_not_null(name: str) -> str:
    """The CHECK whose validation lets SET NOT NULL skip its scan of the table."""
    return text(sql.SQL("CHECK ({} IS NOT NULL)").format(column(name)))


def check_not_blank(name: str) -> str:
    return text(sql.SQL("CHECK ({})").format(not_blank(name)))


def check_format(rule: Rule, is_text: bool) -> str:
    value = column(rule.column) if is_text else sql.SQL("{}::text").format(column(rule.column))
    return text(sql.SQL("CHECK ({} ~ {})").format(value, sql.Literal(rule.pattern)))


def foreign_key(rule: Rule) -> str:
    return text(
        sql.SQL("FOREIGN KEY ({}) REFERENCES {} ({})").format(
            column(rule.column), sql.Identifier(rule.target_table), column(rule.target_column)
        )
    )


def unique_index(rule: Rule, skip_blank: bool) -> str:
    """`ON table (column)`, partial on non-blank values when the rule ignores blanks."""
    on = sql.SQL("ON {} ({})").format(sql.Identifier(rule.table), column(rule.column))
    if skip_blank:
        on = sql.SQL("{} WHERE {}").format(on, not_blank(rule.column))
    return text(on)


def add_statement(enforcer: Enforcer) -> str:
    """ALTER TABLE ... ADD CONSTRAINT ... NOT VALID: new writes are checked, existing rows are not read."""
    return text(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID;").format(
            sql.Identifier(enforcer.table), sql.Identifier(_named(enforcer)), sql.SQL(enforcer.definition)
        )
    )


def validate_statement(enforcer: Enforcer) -> str:
    """VALIDATE CONSTRAINT reads the rows under a lock that lets the app keep writing."""
    return text(
        sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {};").format(
            sql.Identifier(enforcer.table), sql.Identifier(_named(enforcer))
        )
    )


def set_not_null_statement(enforcer: Enforcer) -> str:
    return text(
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL;").format(
            sql.Identifier(enforcer.table), column(enforcer.column)
        )
    )


def index_statement(enforcer: Enforcer) -> str:
    return text(
        sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} {};").format(
            sql.Identifier(_named(enforcer)), sql.SQL(enforcer.definition)
        )
    )


def _named(enforcer: Enforcer) -> str:
    if enforcer.name is None:
        raise ValueError(f"{enforcer.rule}: an object guard does not create has no statement")
    return enforcer.name
