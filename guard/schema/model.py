"""The schema objects guard compares, as frozen values read from the system catalogs."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql


def ident(*parts: str) -> str:
    """Quote a (possibly qualified) identifier for the repair script."""
    return sql.Identifier(*parts).as_string(None)


def display(schema: str, name: str) -> str:
    """Name an object for a subject: bare in `public`, schema-qualified elsewhere."""
    return name if schema == "public" else f"{schema}.{name}"


@dataclass(frozen=True)
class Column:
    """One table column: everything about it except its physical position."""

    name: str
    type: str
    not_null: bool
    default: str | None
    identity: str
    generated: str | None
    collation: str | None

    def spec(self) -> str:
        """Return the column's definition as it appears in CREATE TABLE or ADD COLUMN."""
        parts = [ident(self.name), self.type]
        if self.collation:
            parts.append(f"COLLATE {ident(self.collation)}")
        if self.generated is not None:
            parts.append(f"GENERATED ALWAYS AS ({self.generated}) STORED")
        elif self.identity:
            parts.append(f"GENERATED {identity_word(self.identity)} AS IDENTITY")
        elif self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        if self.not_null:
            parts.append("NOT NULL")
        return " ".join(parts)


def identity_word(code: str) -> str:
    return "ALWAYS" if code == "a" else "BY DEFAULT"


@dataclass(frozen=True)
class Table:
    """A table, its partition key when partitioned, and its columns in physical order."""

    schema: str
    name: str
    partition: str | None
    columns: tuple[Column, ...]

    @property
    def key(self) -> str:
        return display(self.schema, self.name)

    @property
    def qualified(self) -> str:
        return ident(self.schema, self.name)

    def column_map(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}


@dataclass(frozen=True)
class Constraint:
    """A primary key, unique, check, foreign-key or exclusion constraint on a table."""

    schema: str
    table: str
    name: str
    type: str
    definition: str

    @property
    def table_key(self) -> str:
        return display(self.schema, self.table)

    @property
    def key(self) -> str:
        return f"{self.table_key}.{self.name}"


@dataclass(frozen=True)
class Index:
    """An index no constraint owns; `definition` is everything after its name.

    `valid` is false for an index a failed `CREATE INDEX CONCURRENTLY` left behind: PostgreSQL keeps
    updating it but never reads it, and a unique one still refuses duplicates.
    """

    schema: str
    table: str
    name: str
    unique: bool
    definition: str
    valid: bool = field(default=True, compare=False)

    @property
    def table_key(self) -> str:
        return display(self.schema, self.table)

    @property
    def key(self) -> str:
        return display(self.schema, self.name)

    def create_sql(self, *, concurrently: bool = False) -> str:
        unique = "UNIQUE " if self.unique else ""
        online = "CONCURRENTLY " if concurrently else ""
        return f"CREATE {unique}INDEX {online}{ident(self.name)} ON {self.definition};"


@dataclass(frozen=True)
class SchemaObject:
    """Any other object: schema, extension, enum, sequence, function, view, materialized view, trigger.

    `definition` is what is compared; `values` carries an enum's labels or a sequence's owner;
    `table` names the table a trigger is on.
    """

    type: str
    schema: str
    name: str
    definition: str
    values: tuple[str, ...] = ()
    table: str | None = None
    args: str | None = None

    @property
    def key(self) -> str:
        if self.type in ("schema", "extension"):
            return self.name
        if self.table is not None:
            return f"{display(self.schema, self.table)}.{self.name}"
        if self.args is not None:
            return f"{display(self.schema, self.name)}({self.args})"
        return display(self.schema, self.name)

    @property
    def subject(self) -> str:
        return f"{self.type}:{self.key}"

    @property
    def qualified(self) -> str:
        if self.type in ("schema", "extension", "trigger"):
            return ident(self.name)
        return ident(self.schema, self.name)
