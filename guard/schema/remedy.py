"""The SQL that brings the live database in line with the migrations, per difference and as one script.

Every statement has two spellings. `sql` is the online form the repair runs while the app keeps
working: indexes built and dropped `CONCURRENTLY`, CHECK and foreign-key constraints added `NOT VALID`
and validated afterwards (a `SHARE UPDATE EXCLUSIVE` lock that lets writes through), `SET NOT NULL`
after a validated `CHECK (col IS NOT NULL)` so PostgreSQL skips its scan under an exclusive lock, a
unique or primary key attached to an index built concurrently. `plain` is what a Prisma migration
says for the same change (`guard drift adopt` writes it); an empty `plain` is a step only the online
form needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import sql

from guard.schema.model import Column, Constraint, Index, SchemaObject, Table, ident

# Phases: the script runs every statement of a lower phase first, so dependents are dropped before
# what they depend on, and created after it. Indexes come before constraints: a unique key is
# attached to its concurrently built index, and a foreign key needs the referenced key's index.
DROP_TRIGGER, DROP_VIEW, DROP_FOREIGN_KEY, DROP_CONSTRAINT, DROP_INDEX = 0, 1, 2, 3, 4
DROP_TABLE, DROP_COLUMN = 5, 6
CREATE_SCHEMA, CREATE_EXTENSION, CREATE_TYPE, CREATE_SEQUENCE, CREATE_FUNCTION = 10, 11, 12, 13, 14
CREATE_TABLE, ALTER_COLUMN, SEQUENCE_OWNER, CREATE_INDEX, ADD_CONSTRAINT = 15, 16, 17, 18, 19
ADD_FOREIGN_KEY, CREATE_VIEW, CREATE_TRIGGER, VALIDATE = 20, 21, 22, 23
DROP_FUNCTION, DROP_SEQUENCE, DROP_TYPE, DROP_EXTENSION, DROP_SCHEMA = 30, 31, 32, 33, 34

DEFAULT_LOCK_TIMEOUT = "2s"
SCRIPT_HEADER = f"""-- Repair script from `guard drift sql`: makes the live schema match the migrations.
-- Review every statement before running it; guard applies nothing.
-- Every statement runs on its own, with no BEGIN/COMMIT around them: CREATE/DROP INDEX CONCURRENTLY
-- cannot run inside a transaction block, and one short transaction per step never holds a lock the
-- app needs for long. Apply it with `guard drift repair --script FILE --apply` (a backup first,
-- lock_timeout with retries, statements that drop data refused), or with psql in autocommit mode,
-- stopping at the first error (never with --single-transaction / -1):
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f FILE
SET lock_timeout = '{DEFAULT_LOCK_TIMEOUT}';
SET check_function_bodies = off;
"""
MIGRATION_HEADER = "-- Written by `guard drift adopt`: the live schema's difference from the migrations.\n"
# A unique or primary key on plain columns can be attached to an index built concurrently.
_KEY_ON_COLUMNS = re.compile(r"^(PRIMARY KEY|UNIQUE) (\([^()]+\))$")
_NOT_VALID = " NOT VALID"
MAX_NAME = 63  # PostgreSQL's NAMEDATALEN - 1


@dataclass(frozen=True)
class Statement:
    """One SQL statement, the phase of the script it belongs to, and its spelling in a migration."""

    phase: int
    sql: str
    plain: str | None = None  # None: the same as sql; "": no statement in a migration

    @property
    def migration_sql(self) -> str:
        return self.sql if self.plain is None else self.plain


Statements = tuple[Statement, ...]


def _ordered(groups: Iterable[Sequence[Statement]]) -> list[Statement]:
    return sorted((s for group in groups for s in group), key=lambda s: s.phase)


def script(groups: Iterable[Sequence[Statement]]) -> str:
    """Return every statement's online form in dependency order (stable within a phase), for review."""
    ordered = _ordered(groups)
    body = "\n".join(s.sql for s in ordered)
    return f"{SCRIPT_HEADER}\n{body}\n" if ordered else "-- no drift: nothing to repair\n"


def migration_script(groups: Iterable[Sequence[Statement]], summary: str) -> str:
    """Return the statements as a Prisma migration says them: plain DDL, no online-only steps."""
    body = "\n".join(s.migration_sql for s in _ordered(groups) if s.migration_sql)
    return f"{MIGRATION_HEADER}-- {summary}\n\n{body}\n"


def literal(value: str) -> str:
    return sql.Literal(value).as_string(None)


def create_table(
    table: Table,
    constraints: Iterable[Constraint],
    indexes: Iterable[Index],
    dependents: Iterable[SchemaObject],
) -> Statements:
    """Create a table with its columns, constraints, indexes, triggers and serial sequences."""
    columns = ",\n".join(f"    {c.spec()}" for c in table.columns)
    suffix = f" PARTITION BY {table.partition}" if table.partition else ""
    created = Statement(CREATE_TABLE, f"CREATE TABLE {table.qualified} (\n{columns}\n){suffix};")
    # A table the script creates is new and empty: nobody waits on its locks, so plain forms do.
    return (
        created,
        *(_added(c) for c in constraints),
        *(Statement(CREATE_INDEX, i.create_sql()) for i in indexes),
        *(s for t in dependents for s in create_object(t)),
    )


def drop_table(table: Table) -> Statements:
    return (Statement(DROP_TABLE, f"DROP TABLE IF EXISTS {table.qualified};"),)


def add_column(table: Table, column: Column) -> Statements:
    return (Statement(ALTER_COLUMN, f"ALTER TABLE {table.qualified} ADD COLUMN {column.spec()};"),)


def drop_column(table: Table, column: Column) -> Statements:
    return (Statement(DROP_COLUMN, f"ALTER TABLE {table.qualified} DROP COLUMN {ident(column.name)};"),)


def alter_column(table: Table, want: Column, have: Column) -> Statements:
    """Change a column in place; a generated column's expression can only change by re-adding it."""
    target = f"ALTER TABLE {table.qualified}"
    if want.generated != have.generated:
        sql_text = f"{target} DROP COLUMN {ident(want.name)}, ADD COLUMN {want.spec()};"
        return (Statement(ALTER_COLUMN, sql_text),)
    col = f"{target} ALTER COLUMN {ident(want.name)}"
    out: list[str] = []
    if (want.type, want.collation) != (have.type, have.collation):
        collate = f" COLLATE {ident(want.collation)}" if want.collation else ""
        out.append(f"{col} TYPE {want.type}{collate} USING {ident(want.name)}::{want.type};")
    out += _identity_and_default(col, want, have)
    made = [Statement(ALTER_COLUMN, s) for s in out]
    if want.not_null and not have.not_null:
        made += _set_not_null(table, want)
    elif have.not_null and not want.not_null:
        made.append(Statement(ALTER_COLUMN, f"{col} DROP NOT NULL;"))
    return tuple(made)


def _set_not_null(table: Table, column: Column) -> list[Statement]:
    """SET NOT NULL after a validated CHECK, so PostgreSQL skips its scan under ACCESS EXCLUSIVE."""
    target = f"ALTER TABLE {table.qualified}"
    check = ident(f"{table.name}_{column.name}_not_null"[:MAX_NAME])
    name = ident(column.name)
    return [
        Statement(ALTER_COLUMN, f"{target} ADD CONSTRAINT {check} CHECK ({name} IS NOT NULL) NOT VALID;", ""),
        Statement(ALTER_COLUMN, f"{target} VALIDATE CONSTRAINT {check};", ""),
        Statement(ALTER_COLUMN, f"{target} ALTER COLUMN {name} SET NOT NULL;"),
        Statement(ALTER_COLUMN, f"{target} DROP CONSTRAINT {check};", ""),
    ]


def _identity_and_default(col: str, want: Column, have: Column) -> list[str]:
    out: list[str] = []
    if have.identity and not want.identity:
        out.append(f"{col} DROP IDENTITY;")
    if want.default != have.default and not want.identity:
        out.append(f"{col} SET DEFAULT {want.default};" if want.default else f"{col} DROP DEFAULT;")
    if want.identity and not have.identity:
        if have.default is not None:
            out.append(f"{col} DROP DEFAULT;")
        out.append(f"{col} ADD GENERATED {_word(want.identity)} AS IDENTITY;")
    elif want.identity and want.identity != have.identity:
        out.append(f"{col} SET GENERATED {_word(want.identity)};")
    return out


def _word(code: str) -> str:
    return "ALWAYS" if code == "a" else "BY DEFAULT"


def _added(c: Constraint) -> Statement:
    phase = ADD_FOREIGN_KEY if c.type == "f" else ADD_CONSTRAINT
    table = ident(c.schema, c.table)
    return Statement(phase, f"ALTER TABLE {table} ADD CONSTRAINT {ident(c.name)} {c.definition};")


def add_constraint(c: Constraint) -> Statements:
    """Add a constraint to a table in use without holding the app out while existing rows are checked."""
    table, name = ident(c.schema, c.table), ident(c.name)
    plain = _added(c)
    key = _KEY_ON_COLUMNS.match(c.definition)
    if key is not None:  # build the index concurrently, then attach it (a brief lock, no scan)
        kind, columns = key.groups()
        unique = f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} {columns};"
        attach = f"ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name};"
        return (Statement(CREATE_INDEX, unique, ""), Statement(ADD_CONSTRAINT, attach, plain.sql))
    if c.type not in ("c", "f") or c.definition.endswith(_NOT_VALID):
        return (plain,)
    added = f"ALTER TABLE {table} ADD CONSTRAINT {name} {c.definition}{_NOT_VALID};"
    return (
        Statement(plain.phase, added, plain.sql),
        Statement(VALIDATE, f"ALTER TABLE {table} VALIDATE CONSTRAINT {name};", ""),
    )


def drop_constraint(c: Constraint) -> Statements:
    phase = DROP_FOREIGN_KEY if c.type == "f" else DROP_CONSTRAINT
    table = ident(c.schema, c.table)
    return (Statement(phase, f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {ident(c.name)};"),)


def rename_constraint(want: Constraint, have: Constraint) -> Statements:
    table = ident(want.schema, want.table)
    text = f"ALTER TABLE {table} RENAME CONSTRAINT {ident(have.name)} TO {ident(want.name)};"
    return (Statement(ADD_CONSTRAINT, text),)


def create_index(i: Index) -> Statements:
    return (Statement(CREATE_INDEX, i.create_sql(concurrently=True), i.create_sql()),)


def drop_index(i: Index) -> Statements:
    name = ident(i.schema, i.name)
    online = f"DROP INDEX CONCURRENTLY IF EXISTS {name};"
    return (Statement(DROP_INDEX, online, f"DROP INDEX IF EXISTS {name};"),)


def rebuild_index(want: Index | None, invalid: Index) -> Statements:
    """Drop an index a failed concurrent build left invalid; build it again if the migrations have it."""
    return drop_index(invalid) + (create_index(want) if want is not None else ())


def rename_index(want: Index, have: Index) -> Statements:
    text = f"ALTER INDEX {ident(have.schema, have.name)} RENAME TO {ident(want.name)};"
    return (Statement(CREATE_INDEX, text),)


_CREATE_PHASE = {
    "schema": CREATE_SCHEMA,
    "extension": CREATE_EXTENSION,
    "enum": CREATE_TYPE,
    "sequence": CREATE_SEQUENCE,
    "function": CREATE_FUNCTION,
    "procedure": CREATE_FUNCTION,
    "view": CREATE_VIEW,
    "materialized_view": CREATE_VIEW,
    "trigger": CREATE_TRIGGER,
}
_DROP_PHASE = {
    "schema": DROP_SCHEMA,
    "extension": DROP_EXTENSION,
    "enum": DROP_TYPE,
    "sequence": DROP_SEQUENCE,
    "function": DROP_FUNCTION,
    "procedure": DROP_FUNCTION,
    "view": DROP_VIEW,
    "materialized_view": DROP_VIEW,
    "trigger": DROP_TRIGGER,
}


def create_object(obj: SchemaObject, indexes: Iterable[Index] = ()) -> Statements:
    """Create a non-table object (a materialized view together with its indexes)."""
    phase = _CREATE_PHASE[obj.type]
    if obj.type == "sequence":
        params = obj.definition.split(" OWNED BY ")[0]
        made = [Statement(phase, f"CREATE SEQUENCE {obj.qualified} {params};")]
        if obj.values[0]:
            made.append(
                Statement(SEQUENCE_OWNER, f"ALTER SEQUENCE {obj.qualified} OWNED BY {obj.values[0]};")
            )
        return tuple(made)
    extra = tuple(Statement(phase, i.create_sql()) for i in indexes)  # right after their view
    return (Statement(phase, _create_text(obj)), *extra)


def _create_text(obj: SchemaObject) -> str:
    q = obj.qualified
    if obj.type == "schema":
        return f"CREATE SCHEMA IF NOT EXISTS {q};"
    if obj.type == "extension":
        schema, version = obj.values
        return f"CREATE EXTENSION IF NOT EXISTS {q} WITH SCHEMA {ident(schema)} VERSION {literal(version)};"
    if obj.type == "enum":
        return f"CREATE TYPE {q} AS ENUM ({', '.join(literal(v) for v in obj.values)});"
    if obj.type in ("function", "procedure"):
        return f"{obj.definition};"
    if obj.type == "view":
        return f"CREATE VIEW {q} AS\n{obj.definition};"
    if obj.type == "materialized_view":
        return f"CREATE MATERIALIZED VIEW {q} AS\n{obj.definition};"
    text = obj.definition.split(" [enabled=")[0] + ";"
    if obj.values and obj.values[0] == "D":
        text += f"\nALTER TABLE {ident(obj.schema, obj.table or '')} DISABLE TRIGGER {q};"
    return text


def drop_object(obj: SchemaObject) -> Statements:
    phase = _DROP_PHASE[obj.type]
    return (Statement(phase, _drop_text(obj)),)


def _drop_text(obj: SchemaObject) -> str:
    q = obj.qualified
    if obj.type == "trigger":
        return f"DROP TRIGGER IF EXISTS {q} ON {ident(obj.schema, obj.table or '')};"
    if obj.type in ("function", "procedure"):
        return f"DROP {obj.type.upper()} IF EXISTS {q}({obj.args});"
    word = {"enum": "TYPE", "materialized_view": "MATERIALIZED VIEW"}.get(obj.type, obj.type.upper())
    return f"DROP {word} IF EXISTS {q};"


def change_object(want: SchemaObject, have: SchemaObject, indexes: Iterable[Index] = ()) -> Statements:
    """Bring one changed object in line: alter where PostgreSQL can, otherwise drop and recreate."""
    if want.type in ("function", "procedure"):
        return (Statement(CREATE_FUNCTION, f"{want.definition};"),)
    if want.type == "sequence":
        owner = want.values[0] or "NONE"
        params = want.definition.split(" OWNED BY ")[0]
        text = f"ALTER SEQUENCE {want.qualified} {params} OWNED BY {owner};"
        return (Statement(SEQUENCE_OWNER, text),)
    if want.type == "enum":
        return _change_enum(want, have)
    if want.type == "extension":
        return _change_extension(want, have)
    return (*drop_object(have), *create_object(want, indexes))


def _change_enum(want: SchemaObject, have: SchemaObject) -> Statements:
    """Add the missing labels in place; labels cannot be removed or reordered without a rebuild."""
    labels, existing = list(want.values), list(have.values)
    if [v for v in labels if v in existing] != existing:
        return (
            Statement(
                CREATE_TYPE,
                f"-- enum {want.qualified}: labels {existing} must become "
                f"{labels}; removing or reordering labels needs a manual rebuild",
            ),
        )
    out = []
    for position, label in enumerate(labels):
        if label in existing:
            continue
        if position:
            where = f" AFTER {literal(labels[position - 1])}"
        else:
            where = f" BEFORE {literal(existing[0])}" if existing else ""
        out.append(Statement(CREATE_TYPE, f"ALTER TYPE {want.qualified} ADD VALUE {literal(label)}{where};"))
    return tuple(out)


def _change_extension(want: SchemaObject, have: SchemaObject) -> Statements:
    out = []
    if want.values[0] != have.values[0]:
        out.append(f"ALTER EXTENSION {want.qualified} SET SCHEMA {ident(want.values[0])};")
    if want.values[1] != have.values[1]:
        out.append(f"ALTER EXTENSION {want.qualified} UPDATE TO {literal(want.values[1])};")
    return tuple(Statement(CREATE_EXTENSION, s) for s in out)
