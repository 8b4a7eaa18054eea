"""Which column type changes make PostgreSQL rewrite the whole table, decided the way PostgreSQL decides.

`ALTER COLUMN ... TYPE` keeps the table's files only when the new type is binary-coercible from the
old one (varchar -> text) or only widens its limit and the type's support function says so (varchar(n)
to varchar(m >= n), numeric(p, s) to numeric(p' >= p, s), timestamp(p) to a larger precision);
otherwise every row and index is rewritten under an ACCESS EXCLUSIVE lock (ATColumnChangeRequiresRewrite
in PostgreSQL's tablecmds.c). Anything not known to be safe here counts as a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VARHDRSZ = 4  # varchar, bpchar and numeric store their limit plus this in atttypmod
TEMPORAL = frozenset({"timestamp", "timestamptz", "time", "timetz"})
# Types whose limit can be dropped without a rewrite: varchar(n) -> varchar, numeric(p, s) -> numeric.
UNLIMITABLE = frozenset({"varchar", "varbit", "numeric", "interval"}) | TEMPORAL
MAX_TEMPORAL_PRECISION = 6
INTERVAL_FULL_PRECISION = 0xFFFF

# (from, to) pairs pg_cast marks binary-coercible (castmethod 'b'): a relabel, no rewrite.
BINARY_COERCIBLE = frozenset(
    {
        ("varchar", "text"),
        ("text", "varchar"),
        ("cidr", "inet"),
        ("text", "citext"),
        ("varchar", "citext"),
        ("citext", "text"),
        ("citext", "varchar"),
    }
)


@dataclass(frozen=True)
class ColumnType:
    """A column's type as the rewrite rule needs it: the catalog's type name, its limits, array or not."""

    name: str
    mods: tuple[int, ...] = ()
    array: bool = False
    shown: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.shown or self.name


def type_from_node(node: Any, shown: str = "") -> ColumnType:
    """Read a pglast TypeName (`varchar(300)` is pg_catalog.varchar with typmods (300,))."""
    name = str(node.names[-1].sval)
    mods = tuple(int(m.val.ival) for m in node.typmods or () if hasattr(m.val, "ival"))
    if name == "numeric" and len(mods) == 1:
        mods = (mods[0], 0)  # numeric(p) is numeric(p, 0)
    if name == "interval" and mods:
        precision = mods[1] if len(mods) > 1 else INTERVAL_FULL_PRECISION
        mods = (((mods[0] & 0x7FFF) << 16) | precision,)  # as atttypmod stores it
    return ColumnType(name, mods, bool(node.arrayBounds), shown)


def type_from_catalog(name: str, typmod: int, array: bool, shown: str = "") -> ColumnType:
    """Read a column from pg_attribute: its (element) type name and atttypmod."""
    return ColumnType(name, _catalog_mods(name, typmod), array, shown)


def _catalog_mods(name: str, typmod: int) -> tuple[int, ...]:
    if typmod < 0:
        return ()
    if name in ("varchar", "bpchar"):
        return (typmod - VARHDRSZ,)
    if name == "numeric":
        packed = typmod - VARHDRSZ
        return ((packed >> 16) & 0xFFFF, packed & 0xFFFF)
    return (typmod,)  # timestamp/time precision, bit length, interval's packed typmod


def rewrites(old: ColumnType, new: ColumnType) -> bool:
    """Tell whether changing a column from `old` to `new` (with no USING expression) rewrites the table."""
    if old.array or new.array:
        return old != new  # element-wise relabels exist, but only an unchanged array type is certain
    if old.name == new.name:
        return not _widens(old.name, old.mods, new.mods)
    if (old.name, new.name) in BINARY_COERCIBLE:
        return new.name == "varchar" and bool(new.mods)  # text -> varchar(n) checks every value's length
    return True


def _widens(name: str, old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """Tell whether the type's support function turns this limit change into a relabel."""
    if old == new:
        return True
    if not new:
        return name in UNLIMITABLE
    if name in ("varchar", "varbit"):
        return bool(old) and new[0] >= old[0]
    if name == "numeric":
        return bool(old) and new[1] == old[1] and new[0] >= old[0]
    if name in TEMPORAL:
        return new[0] == MAX_TEMPORAL_PRECISION or (bool(old) and new[0] >= old[0])
    return False
