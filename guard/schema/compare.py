"""Compare the schema the migrations build with the live one: definitions, not accidents."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from guard.schema import remedy
from guard.schema.model import Column, Constraint, Index, SchemaObject, Table, display
from guard.schema.remedy import Statements
from guard.schema.snapshot import Snapshot

# Names PostgreSQL (and Prisma) generate: <table>_<columns>_<suffix>, with a digit added on collision.
_GENERATED_NAME = re.compile(r"_(pkey|key|fkey|check|excl|idx)\d*$")
# Prisma's schema names primary, unique and foreign keys and indexes on plain columns; a rename of one
# is drift to `migrate dev` ("Renamed index ..."). CHECK and exclusion constraints and expression or
# partial indexes are not in a Prisma schema, so a generated name of theirs stays an accident.
_MANAGED_CONSTRAINTS = ("p", "u", "f")
_KEY_COLUMNS = re.compile(r"USING \w+ \(([^()]*)\)$")
_CONSTRAINT_TYPES = {"p": "primary key", "u": "unique", "c": "check", "f": "foreign key", "x": "exclusion"}
_T = TypeVar("_T", Constraint, Index)


@dataclass(frozen=True)
class Difference:
    """One way the live schema differs from the migrations, and the SQL that repairs it."""

    kind: str
    subject: str
    object_type: str
    message: str
    statements: Statements

    @property
    def sql(self) -> str:
        return "\n".join(s.sql for s in self.statements)


def compare(want: Snapshot, have: Snapshot) -> list[Difference]:
    """Return every difference, tables first, in the migrations' creation order."""
    missing = [t for k, t in want.tables.items() if k not in have.tables]
    extra = [t for k, t in have.tables.items() if k not in want.tables]
    whole = {t.key for t in missing} | {t.key for t in extra} | _rebuilt_views(want, have)
    found = [_table_missing(t, want) for t in missing]
    found += [
        Difference(
            "table_extra",
            f"table:{t.key}",
            "table",
            f"table {t.key} is not in the migrations",
            remedy.drop_table(t),
        )
        for t in extra
    ]
    for key, table in want.tables.items():
        if key in have.tables:
            found += _columns(table, have.tables[key])
    found += _constraints(_without(want.constraints, whole), _without(have.constraints, whole))
    found += _indexes(_without(want.indexes, whole), _without(have.indexes, whole))
    found += _objects(want, have, whole)
    return found


def _without(items: dict[str, _T], tables: set[str]) -> list[_T]:
    return [item for item in items.values() if item.table_key not in tables]


def _rebuilt_views(want: Snapshot, have: Snapshot) -> set[str]:
    """Materialized views created or dropped whole: their indexes go with them."""
    keys = set()
    for subject, obj in {**want.objects, **have.objects}.items():
        if obj.type == "materialized_view":
            mine, theirs = want.objects.get(subject), have.objects.get(subject)
            if mine is None or theirs is None or mine.definition != theirs.definition:
                keys.add(obj.key)
    return keys


def _table_missing(table: Table, want: Snapshot) -> Difference:
    constraints = [c for c in want.constraints.values() if c.table_key == table.key]
    indexes = [i for i in want.indexes.values() if i.table_key == table.key]
    dependents = [o for o in want.objects.values() if _table_of(o) == table.key]
    return Difference(
        "table_missing",
        f"table:{table.key}",
        "table",
        f"table {table.key} is in the migrations but not in the database",
        remedy.create_table(table, constraints, indexes, dependents),
    )


def _columns(want: Table, have: Table) -> list[Difference]:
    mine, theirs = want.column_map(), have.column_map()
    found = []
    for name, column in mine.items():
        subject = f"column:{want.key}.{name}"
        if name not in theirs:
            found.append(
                Difference(
                    "column_missing",
                    subject,
                    "column",
                    f"column {want.key}.{name} is in the migrations but not the database",
                    remedy.add_column(want, column),
                )
            )
        elif column != theirs[name]:
            found.append(
                Difference(
                    "column_changed",
                    subject,
                    "column",
                    f"column {want.key}.{name}: {_column_delta(column, theirs[name])}",
                    remedy.alter_column(want, column, theirs[name]),
                )
            )
    for name, column in theirs.items():
        if name not in mine:
            found.append(
                Difference(
                    "column_extra",
                    f"column:{want.key}.{name}",
                    "column",
                    f"column {want.key}.{name} is not in the migrations",
                    remedy.drop_column(want, column),
                )
            )
    return found


def _column_delta(want: Column, have: Column) -> str:
    labels = {
        "type": "type",
        "collation": "collation",
        "not_null": "NOT NULL",
        "default": "default",
        "identity": "identity",
        "generated": "generated as",
    }
    parts = [
        f"{label} {_shown(getattr(want, field))} in the migrations, "
        f"{_shown(getattr(have, field))} in the database"
        for field, label in labels.items()
        if getattr(want, field) != getattr(have, field)
    ]
    return "; ".join(parts)


def _shown(value: object) -> str:
    if value is None or value == "":
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def pair(
    want: Iterable[_T],
    have: Iterable[_T],
    signature: Callable[[_T], Hashable],
    managed: Callable[[_T], bool] = lambda _: False,
) -> tuple[list[tuple[_T, _T]], list[_T], list[_T]]:
    """Pair objects by name, then by definition; return (differing pairs, missing, extra).

    A pair with equal definitions and names that differ only because they were generated is not
    drift, unless Prisma manages the name (`managed`); any other name change is reported as a rename.
    """
    mine = {w.key: w for w in want}
    theirs = {h.key: h for h in have}
    for key in [k for k in mine if k in theirs and signature(mine[k]) == signature(theirs[k])]:
        del mine[key], theirs[key]
    pairs: list[tuple[_T, _T]] = []
    by_signature: dict[Hashable, list[str]] = {}
    for key, item in theirs.items():
        by_signature.setdefault(signature(item), []).append(key)
    for key, item in list(mine.items()):
        candidates = by_signature.get(signature(item))
        if candidates:
            other = theirs.pop(candidates.pop(0))
            del mine[key]
            if item.name != other.name and (managed(item) or not _generated_alike(item.name, other.name)):
                pairs.append((item, other))
    for key in [k for k in mine if k in theirs]:
        pairs.append((mine.pop(key), theirs.pop(key)))
    return pairs, list(mine.values()), list(theirs.values())


def _generated_alike(a: str, b: str) -> bool:
    return a == b or bool(_GENERATED_NAME.search(a) and _GENERATED_NAME.search(b))


def managed_constraint(c: Constraint) -> bool:
    """Say whether Prisma's schema names this constraint (a primary, unique or foreign key)."""
    return c.type in _MANAGED_CONSTRAINTS


def managed_index(i: Index) -> bool:
    """Say whether Prisma's schema names this index: one on plain columns, with no WHERE."""
    return _KEY_COLUMNS.search(i.definition) is not None


def _constraints(want: list[Constraint], have: list[Constraint]) -> list[Difference]:
    pairs, missing, extra = pair(
        want, have, lambda c: (c.table_key, c.type, c.definition), managed_constraint
    )
    found = []
    for mine, theirs in pairs:
        subject = f"constraint:{mine.key}"
        if mine.definition == theirs.definition:
            found.append(
                Difference(
                    "constraint_renamed",
                    subject,
                    "constraint",
                    f"{_describe(mine)} is named {theirs.name} in the database",
                    remedy.rename_constraint(mine, theirs),
                )
            )
        else:
            found.append(
                Difference(
                    "constraint_changed",
                    subject,
                    "constraint",
                    f"{_describe(mine)}: {mine.definition} in the migrations, "
                    f"{theirs.definition} in the database",
                    remedy.drop_constraint(theirs) + remedy.add_constraint(mine),
                )
            )
    found += [
        Difference(
            "constraint_missing",
            f"constraint:{c.key}",
            "constraint",
            f"{_describe(c)} ({c.definition}) is not in the database",
            remedy.add_constraint(c),
        )
        for c in missing
    ]
    found += [
        Difference(
            "constraint_extra",
            f"constraint:{c.key}",
            "constraint",
            f"{_describe(c)} ({c.definition}) is not in the migrations",
            remedy.drop_constraint(c),
        )
        for c in extra
    ]
    return found


def _describe(c: Constraint) -> str:
    return f"{_CONSTRAINT_TYPES[c.type]} constraint {c.name} on {c.table_key}"


def _invalid_indexes(want: list[Index], have: list[Index]) -> tuple[list[Difference], list[Index]]:
    """Report each index a failed concurrent build left invalid, and return the wanted ones they stand for.

    PostgreSQL never reads an invalid index (a unique one still refuses duplicates), so it is the
    migrations' index missing in all but name: the repair drops it and builds it again, concurrently.
    """
    wanted = {i.key: i for i in want}
    found, replaced = [], []
    for index in (i for i in have if not i.valid):
        mine = wanted.get(index.key)
        if mine is not None:
            replaced.append(mine)
        where = "drop it and build it again" if mine is not None else "it is not in the migrations either"
        found.append(
            Difference(
                "index_invalid",
                f"index:{index.key}",
                "index",
                f"index {index.key} is invalid (a failed CREATE INDEX CONCURRENTLY; never used): {where}",
                remedy.rebuild_index(mine, index),
            )
        )
    return found, replaced


def _indexes(want: list[Index], have: list[Index]) -> list[Difference]:
    found, replaced = _invalid_indexes(want, have)
    want = [i for i in want if i not in replaced]
    have = [i for i in have if i.valid]
    pairs, missing, extra = pair(want, have, lambda i: (i.table_key, i.unique, i.definition), managed_index)
    for mine, theirs in pairs:
        subject = f"index:{mine.key}"
        if (mine.unique, mine.definition) == (theirs.unique, theirs.definition):
            found.append(
                Difference(
                    "index_renamed",
                    subject,
                    "index",
                    f"index {mine.key} is named {theirs.name} in the database",
                    remedy.rename_index(mine, theirs),
                )
            )
        else:
            found.append(
                Difference(
                    "index_changed",
                    subject,
                    "index",
                    f"index {mine.key}: {mine.create_sql()} in the migrations, "
                    f"{theirs.create_sql()} in the database",
                    remedy.drop_index(theirs) + remedy.create_index(mine),
                )
            )
    found += [
        Difference(
            "index_missing",
            f"index:{i.key}",
            "index",
            f"index {i.key} ({i.create_sql()}) is not in the database",
            remedy.create_index(i),
        )
        for i in missing
    ]
    found += [
        Difference(
            "index_extra",
            f"index:{i.key}",
            "index",
            f"index {i.key} ({i.create_sql()}) is not in the migrations",
            remedy.drop_index(i),
        )
        for i in extra
    ]
    return found


def _objects(want: Snapshot, have: Snapshot, whole_tables: set[str]) -> list[Difference]:
    """Compare everything else by subject; triggers of tables created or dropped whole are skipped."""
    found = []
    for subject, mine in want.objects.items():
        if _on_whole_table(mine, whole_tables):
            continue
        theirs = have.objects.get(subject)
        label = mine.type.replace("_", " ")
        if theirs is None:
            found.append(
                Difference(
                    "object_missing",
                    subject,
                    mine.type,
                    f"{label} {mine.key} is in the migrations but not the database",
                    remedy.create_object(mine, _indexes_on(want, mine)),
                )
            )
        elif mine.definition != theirs.definition:
            found.append(
                Difference(
                    "object_changed",
                    subject,
                    mine.type,
                    f"{label} {mine.key} differs: {_first_difference(mine, theirs)}",
                    remedy.change_object(mine, theirs, _indexes_on(want, mine)),
                )
            )
    for subject, theirs in have.objects.items():
        if subject not in want.objects and not _on_whole_table(theirs, whole_tables):
            found.append(
                Difference(
                    "object_extra",
                    subject,
                    theirs.type,
                    f"{theirs.type.replace('_', ' ')} {theirs.key} is not in the migrations",
                    remedy.drop_object(theirs),
                )
            )
    return found


def _on_whole_table(obj: SchemaObject, whole_tables: set[str]) -> bool:
    return _table_of(obj) in whole_tables


def _table_of(obj: SchemaObject) -> str | None:
    """Name the table an object belongs to: a trigger's, or the owner of a serial's sequence."""
    if obj.type == "sequence":
        return obj.values[1] or None
    return display(obj.schema, obj.table) if obj.table is not None else None


def _indexes_on(snapshot: Snapshot, obj: SchemaObject) -> list[Index]:
    if obj.type != "materialized_view":
        return []
    return [i for i in snapshot.indexes.values() if i.table_key == obj.key]


def _first_difference(want: SchemaObject, have: SchemaObject) -> str:
    """Quote the first differing line of the two definitions, so the message stays one line."""
    mine, theirs = want.definition.splitlines(), have.definition.splitlines()
    for index in range(max(len(mine), len(theirs))):
        a = mine[index].strip() if index < len(mine) else "(end)"
        b = theirs[index].strip() if index < len(theirs) else "(end)"
        if a != b:
            return f"'{a}' in the migrations, '{b}' in the database"
    return "definitions differ"
