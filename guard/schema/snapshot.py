"""Read every object type guard compares from a database's system catalogs into one frozen snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.continuous.capture import SCHEMA, TRIGGER_NAMES
from guard.db.database import Database, Row, load_query
from guard.schema.model import Column, Constraint, Index, SchemaObject, Table, display, ident

# Spellings PostgreSQL keeps apart that mean the same default value.
_DEFAULT_SYNONYMS = {
    "now()": "CURRENT_TIMESTAMP",
    "transaction_timestamp()": "CURRENT_TIMESTAMP",
    "CURRENT_TIMESTAMP": "CURRENT_TIMESTAMP",
}


@dataclass(frozen=True)
class Snapshot:
    """One database's schema: tables with columns, constraints, indexes and the other objects by subject."""

    tables: dict[str, Table] = field(default_factory=dict)
    constraints: dict[str, Constraint] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    objects: dict[str, SchemaObject] = field(default_factory=dict)


def read_snapshot(db: Database) -> Snapshot:
    """Read the app's schema: not system schemas, `_prisma_migrations`, nor what `guard install` made."""
    own = {"guard_schema": SCHEMA, "guard_triggers": list(TRIGGER_NAMES)}
    schemas = [str(r[0]) for r in db.fetch_all(load_query("schema_schemas"), own)]
    params = {"schemas": schemas, **own}
    objects: dict[str, SchemaObject] = {}
    for obj in _other_objects(db, schemas, params):
        objects[obj.subject] = obj
    return Snapshot(
        tables={t.key: t for t in _tables(db.fetch_all(load_query("schema_columns"), params))},
        constraints={c.key: c for c in map(_constraint, _rows(db, "schema_constraints", params))},
        indexes={i.key: i for i in map(_index, _rows(db, "schema_indexes", params))},
        objects=objects,
    )


def _rows(db: Database, name: str, params: dict[str, Any]) -> list[Row]:
    return db.fetch_all(load_query(name), params)


def _other_objects(db: Database, schemas: list[str], params: dict[str, Any]) -> list[SchemaObject]:
    found = [SchemaObject("schema", name, name, "") for name in schemas]
    found += [_extension(r) for r in db.fetch_all(load_query("schema_extensions"))]
    found += [_enum(r) for r in _rows(db, "schema_enums", params)]
    found += [_sequence(r) for r in _rows(db, "schema_sequences", params)]
    found += [_function(r) for r in _rows(db, "schema_functions", params)]
    found += [_view(r) for r in _rows(db, "schema_views", params)]
    found += [_trigger(r) for r in _rows(db, "schema_triggers", params)]
    return found


def normalize_default(expression: str | None) -> str | None:
    """Spell equivalent defaults one way, so `now()` and `CURRENT_TIMESTAMP` are not drift."""
    if expression is None:
        return None
    return _DEFAULT_SYNONYMS.get(expression, expression)


def _tables(rows: list[Row]) -> list[Table]:
    grouped: dict[tuple[str, str], tuple[str | None, list[Column]]] = {}
    for schema, table, partition, name, type_, not_null, default, identity, generated, collation in rows:
        entry = grouped.setdefault((schema, table), (partition, []))
        entry[1].append(
            Column(
                name, type_, bool(not_null), normalize_default(default), identity or "", generated, collation
            )
        )
    return [Table(s, t, part, tuple(cols)) for (s, t), (part, cols) in grouped.items()]


def _constraint(row: Row) -> Constraint:
    schema, table, name, type_, definition = row
    return Constraint(schema, table, name, type_, definition)


def _index(row: Row) -> Index:
    schema, table, name, unique, definition, valid = row
    return Index(schema, table, name, bool(unique), definition, bool(valid))


def _extension(row: Row) -> SchemaObject:
    name, schema, version = row
    return SchemaObject(
        "extension", schema, name, f"schema {schema} version {version}", values=(schema, version)
    )


def _enum(row: Row) -> SchemaObject:
    schema, name, labels = row
    return SchemaObject("enum", schema, name, "\n".join(labels), values=tuple(labels))


def _sequence(row: Row) -> SchemaObject:
    schema, name, type_, start, increment, minimum, maximum, cache, cycle, *owner = row
    params = (
        f"AS {type_} INCREMENT BY {increment} MINVALUE {minimum} MAXVALUE {maximum} "
        f"START WITH {start} CACHE {cache} {'CYCLE' if cycle else 'NO CYCLE'}"
    )
    if owner[0] is None:
        return SchemaObject("sequence", schema, name, params, values=("", ""))
    column = ident(*owner)
    return SchemaObject(
        "sequence", schema, name, f"{params} OWNED BY {column}", values=(column, display(owner[0], owner[1]))
    )


def _function(row: Row) -> SchemaObject:
    schema, name, args, kind, definition = row
    type_ = "procedure" if kind == "p" else "function"
    return SchemaObject(type_, schema, name, str(definition).strip(), args=str(args))


def _view(row: Row) -> SchemaObject:
    schema, name, materialized, definition = row
    type_ = "materialized_view" if materialized else "view"
    return SchemaObject(type_, schema, name, str(definition).strip().rstrip(";"))


def _trigger(row: Row) -> SchemaObject:
    schema, table, name, definition, enabled = row
    state = "" if enabled == "O" else f" [enabled={enabled}]"
    return SchemaObject("trigger", schema, name, f"{definition}{state}", values=(enabled,), table=table)
