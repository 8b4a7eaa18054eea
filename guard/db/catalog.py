"""Look up tables, columns and primary keys so a bad rule fails with its name before any scan."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from guard.db.database import Database
from guard.errors import ConfigError

# Whether the table exists, then the column's type category (NULL when it has no such column): one
# round trip per rule where a table check then a column check were two.
COLUMN_TYPE = """
SELECT to_regclass(quote_ident(%(t)s)) IS NOT NULL, (
  SELECT t.typcategory
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  WHERE a.attrelid = to_regclass(quote_ident(%(t)s)) AND a.attname = %(c)s
    AND a.attnum > 0 AND NOT a.attisdropped
)
"""

PRIMARY_KEY = """
SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
JOIN pg_type t ON t.oid = a.atttypid
WHERE i.indrelid = to_regclass(quote_ident(%s)) AND i.indisprimary
"""

UNIQUE_COLUMN = """
SELECT EXISTS (
  SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = to_regclass(quote_ident(%s)) AND a.attname = %s
    AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
)
"""

# Types whose equal values always print the same text (deterministic collation for the strings):
# judging a pattern once per distinct value is judging each row. citext ('A' = 'a'), numeric
# (1.0 = 1.00), float (-0 = 0), interval, domains and the rest are judged row by row.
SAME_TEXT_WHEN_EQUAL = """
SELECT a.atttypid = ANY('{text,varchar,bpchar,int2,int4,int8,uuid,bool,date}'::regtype[])
   AND coalesce((SELECT c.collisdeterministic FROM pg_collation c WHERE c.oid = a.attcollation), true)
FROM pg_attribute a
WHERE a.attrelid = to_regclass(quote_ident(%s)) AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


def require_column(db: Database, table: str, column: str, *, owner: str) -> str:
    """Return the column's type category ('S' for strings), or fail naming the owner."""
    row = db.fetch_one(COLUMN_TYPE, {"t": table, "c": column})
    if not row or not row[0]:
        raise ConfigError(f"{owner}: table '{table}' does not exist")
    if row[1] is None:
        raise ConfigError(f"{owner}: column '{table}.{column}' does not exist")
    return str(row[1])


def same_text_when_equal(db: Database, table: str, column: str) -> bool:
    """Tell whether two equal values of this column always have the same text (see SAME_TEXT_WHEN_EQUAL)."""
    row = db.fetch_one(SAME_TEXT_WHEN_EQUAL, (table, column))
    return bool(row and row[0])


@dataclass(frozen=True)
class PrimaryKey:
    """A table's single-column primary key and how to bind a list of its values."""

    column: str
    type_name: str
    category: str

    @property
    def sorts_in_python(self) -> bool:
        """Tell whether Python orders this key's values (as psycopg returns them) as PostgreSQL does,
        and the grouping can take each value's lowest key with min() (PostgreSQL 15 has no min(uuid))."""
        return self.type_name in ("smallint", "integer", "bigint")

    def bind(self, keys: Iterable[str]) -> list[Any]:
        """Convert text keys so `pk = ANY(%s)` compares natively and can use the index."""
        if self.category == "N":
            return [int(k) for k in keys]
        if self.type_name == "uuid":
            return [uuid.UUID(k) for k in keys]
        return list(keys)


def primary_key(db: Database, table: str, *, owner: str) -> PrimaryKey:
    """Return the single-column primary key of a table, or fail naming the owner."""
    rows = db.fetch_all(PRIMARY_KEY, (table,))
    if len(rows) != 1:
        raise ConfigError(f"{owner}: table '{table}' needs a single-column primary key")
    return PrimaryKey(str(rows[0][0]), str(rows[0][1]), str(rows[0][2]))


def is_unique(db: Database, table: str, column: str) -> bool:
    """Tell whether a unique index (or primary key) covers exactly this column, so no value repeats."""
    row = db.fetch_one(UNIQUE_COLUMN, (table, column))
    return bool(row and row[0])


# An index a `column = value` lookup can use: valid, whole-table, btree or hash, with the column
# itself (in its own collation) as its first key. A BRIN or trigram index, or one in another
# collation, does not find equal values.
LEADING_INDEX = """
SELECT EXISTS (
  SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
  WHERE i.indrelid = to_regclass(quote_ident(%s)) AND a.attname = %s
    AND i.indisvalid AND i.indpred IS NULL AND am.amname IN ('btree', 'hash')
    AND i.indcollation[0] = a.attcollation
)
"""


def is_indexed(db: Database, table: str, column: str) -> bool:
    """Tell whether an index leads with this column, so rows with a given value are found without a scan."""
    row = db.fetch_one(LEADING_INDEX, (table, column))
    return bool(row and row[0])
