"""A repair script split into steps by PostgreSQL's parser (pglast): which drop data, which run online."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pglast
from pglast import ast, enums
from pglast.parser import ParseError

from guard.errors import UsageError
from guard.schema.model import ident

# (schema or None for the search path, table, column) -> the column's type as format_type() spells it.
ColumnTypes = Callable[[str | None, str, str], str | None]

# A TypeName's internal names, spelled as format_type() spells them.
_TYPE_NAMES = {
    "varchar": "character varying",
    "bpchar": "character",
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "varbit": "bit varying",
}
# Type changes that keep every value (with no type modifier on the new type).
_WIDER = {
    "smallint": {"integer", "bigint", "numeric"},
    "integer": {"bigint", "numeric"},
    "bigint": {"numeric"},
    "real": {"double precision"},
    "character varying": {"text"},
}
# Types whose modifier is a length or precision that only widens when it grows.
_GROWING = {
    "character varying",
    "character",
    "bit varying",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "time with time zone",
}
_FORMATTED = re.compile(r"^(?P<base>[^(\[]+?)(?:\((?P<mods>[^)]*)\))?(?P<rest>[^(\[]*)(?P<array>(?:\[\])*)$")


@dataclass(frozen=True)
class TypeSpec:
    """A column type reduced to what decides whether a change keeps every value."""

    base: str
    mods: tuple[int, ...]
    array: bool


@dataclass(frozen=True)
class Step:
    """One statement of a repair script and what guard must know before running it."""

    number: int
    sql: str
    online: bool = False  # CONCURRENTLY: must run outside a transaction block
    destructive: str | None = None  # why it drops data, when it does
    setting: str | None = None  # the parameter a SET statement sets
    index: tuple[str, ...] | None = None  # the index a concurrent build makes (a retry clears its leftover)

    def to_json(self) -> dict[str, object]:
        return {
            "step": self.number,
            "sql": self.sql,
            "online": self.online,
            "destructive": self.destructive,
        }


def parse_script(text: str, column_type: ColumnTypes, source: str = "the script") -> tuple[Step, ...]:
    """Split a script into statements with PostgreSQL's parser and classify each; refuse what cannot run."""
    try:
        pieces = pglast.split(text)
    except ParseError as exc:
        raise UsageError(f"cannot parse {source}: {exc}") from None
    steps = []
    for number, piece in enumerate(pieces, start=1):
        node = pglast.parse_sql(piece)[0].stmt
        if node is None:
            continue
        if isinstance(node, ast.TransactionStmt):
            raise UsageError(
                f"{source}, statement {number} ({piece.split()[0]}): remove transaction control; "
                "guard runs every statement on its own so CONCURRENTLY can run and locks stay short"
            )
        steps.append(_step(number, piece.strip(), node, column_type))
    return tuple(steps)


def _step(number: int, text: str, node: ast.Node, column_type: ColumnTypes) -> Step:
    if isinstance(node, ast.VariableSetStmt):
        return Step(number, text, setting=node.name)
    if isinstance(node, ast.IndexStmt):
        name = None
        if node.concurrent and node.idxname and node.relation is not None:
            schema = node.relation.schemaname
            name = (schema, node.idxname) if schema else (node.idxname,)
        return Step(number, text, online=bool(node.concurrent), index=name)
    if isinstance(node, ast.DropStmt):
        return Step(number, text, online=bool(node.concurrent), destructive=_dropped(node))
    if isinstance(node, ast.TruncateStmt):
        return Step(number, text, destructive="empties a table")
    if isinstance(node, ast.DeleteStmt):
        return Step(number, text, destructive="deletes rows")
    if isinstance(node, ast.AlterTableStmt):
        return Step(number, text, destructive=_altered(node, column_type))
    return Step(number, text)


def _dropped(node: ast.DropStmt) -> str | None:
    if node.removeType == enums.ObjectType.OBJECT_TABLE:
        names = ", ".join(".".join(p.sval for p in parts) for parts in node.objects or ())
        return f"drops table {names} with its rows"
    if node.behavior == enums.DropBehavior.DROP_CASCADE:
        return "drops with CASCADE, which may drop dependent columns and tables"
    return None


def _altered(node: ast.AlterTableStmt, column_type: ColumnTypes) -> str | None:
    relation = node.relation
    if relation is None or relation.relname is None:
        return None
    table = f"{relation.schemaname}.{relation.relname}" if relation.schemaname else relation.relname
    for cmd in node.cmds or ():
        if not isinstance(cmd, ast.AlterTableCmd):
            continue
        if cmd.subtype == enums.AlterTableType.AT_DropColumn:
            return f"drops column {table}.{cmd.name} with its values"
        if cmd.subtype == enums.AlterTableType.AT_AlterColumnType and isinstance(cmd.def_, ast.ColumnDef):
            old = column_type(relation.schemaname, relation.relname, cmd.name or "")
            new = type_of_node(cmd.def_.typeName)
            if old is not None and narrows(parse_type(old), new):
                change = f"from {old} to {_spelled(new)}"
                return f"changes {table}.{cmd.name} {change}, which may not keep every value"
    return None


def type_of_node(type_name: ast.TypeName | None) -> TypeSpec:
    """Reduce a parsed type name (`varchar(20)`, `pg_catalog.int4[]`) to a TypeSpec."""
    if type_name is None:
        return TypeSpec("", (), False)
    names = [n.sval or "" for n in type_name.names or () if isinstance(n, ast.String)]
    base = names[-1] if names else ""
    mods = tuple(
        int(m.val.ival or 0)
        for m in type_name.typmods or ()
        if isinstance(m, ast.A_Const) and isinstance(m.val, ast.Integer)
    )
    return TypeSpec(_TYPE_NAMES.get(base, base), mods, bool(type_name.arrayBounds))


def parse_type(formatted: str) -> TypeSpec:
    """Reduce a type as format_type() spells it (`timestamp(3) without time zone`) to a TypeSpec."""
    found = _FORMATTED.match(formatted.strip())
    if found is None:
        return TypeSpec(formatted, (), False)
    base = f"{found['base']}{found['rest']}".strip()
    base = base.rsplit(".", 1)[-1].replace('"', "")
    mods = tuple(int(m) for m in (found["mods"] or "").split(",") if m.strip().isdigit())
    return TypeSpec(base, mods, bool(found["array"]))


def narrows(old: TypeSpec, new: TypeSpec) -> bool:
    """Say whether changing a column from `old` to `new` may lose or alter a stored value."""
    if old == new:
        return False
    if old.array != new.array:
        return True
    if old.base == new.base:
        return not _wider_modifier(old, new)
    return not (new.base in _WIDER.get(old.base, set()) and not new.mods)


def _wider_modifier(old: TypeSpec, new: TypeSpec) -> bool:
    if not new.mods:  # no limit (or the largest default precision)
        return True
    if not old.mods:
        return False
    if old.base == "numeric":
        precision, scale = (*old.mods, 0)[:2]
        new_precision, new_scale = (*new.mods, 0)[:2]
        return new_scale >= scale and new_precision - new_scale >= precision - scale
    return old.base in _GROWING and new.mods[0] >= old.mods[0]


def _spelled(spec: TypeSpec) -> str:
    mods = f"({','.join(map(str, spec.mods))})" if spec.mods else ""
    return f"{spec.base}{mods}{'[]' if spec.array else ''}"


def qualified_index(step: Step) -> str | None:
    """Quote the name of the index a concurrent build makes, for the query that checks it after a failure."""
    return ident(*step.index) if step.index else None
