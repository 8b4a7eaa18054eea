"""What the database will hold, statement by statement, as the pending migrations run in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pglast import ast

from guard.lint.facts import Facts, proves_not_null
from guard.lint.typechange import ColumnType

Column = tuple[str, str]  # (table, column)
Rename = Callable[[Column], Column]


@dataclass
class Deployment:
    """The live database's facts, updated by every pending statement the lint has read.

    A table created by a pending migration (earlier in the same file or in an earlier pending
    folder) is new: nobody reads it yet and it holds no rows, so locking, scanning or dropping it
    harms no one. Every other table is existing. Tables are named without their schema.
    """

    new_tables: set[str] = field(default_factory=set)
    new_columns: set[Column] = field(default_factory=set)
    new_indexes: set[str] = field(default_factory=set)
    types: dict[Column, ColumnType] = field(default_factory=dict)
    not_null: set[Column] = field(default_factory=set)
    checks: dict[tuple[str, str], ast.Node | None] = field(default_factory=dict)
    proven_not_null: set[Column] = field(default_factory=set)

    @classmethod
    def on(cls, facts: Facts) -> Deployment:
        """Start from what the live database holds."""
        return cls(
            types={(c.table, c.column): c.type for c in facts.columns},
            not_null={(c.table, c.column) for c in facts.columns if c.not_null},
            checks={(c.table, c.name): c.expression for c in facts.checks},
            proven_not_null={
                (c.table, column)
                for c in facts.checks
                if c.validated
                for column in proves_not_null(c.expression)
            },
        )

    def existing(self, table: str) -> bool:
        return table not in self.new_tables

    def existing_column(self, table: str, column: str) -> bool:
        """Tell whether the running app can know this column: not added by a pending migration."""
        return self.existing(table) and (table, column) not in self.new_columns

    def create_table(self, table: str) -> None:
        self.new_tables.add(table)

    def add_column(self, table: str, column: str, type_: ColumnType, not_null: bool) -> None:
        self.new_columns.add((table, column))
        self.types[(table, column)] = type_
        if not_null:
            self.not_null.add((table, column))

    def add_check(self, table: str, name: str | None, expression: ast.Node | None, validated: bool) -> None:
        if name:
            self.checks[(table, name)] = expression
        if validated:
            self.validated(table, expression)

    def validate(self, table: str, name: str) -> None:
        """Record a VALIDATE CONSTRAINT: a CHECK it proves NOT NULL lets SET NOT NULL skip its scan."""
        self.validated(table, self.checks.get((table, name)))

    def validated(self, table: str, expression: ast.Node | None) -> None:
        self.proven_not_null |= {(table, column) for column in proves_not_null(expression)}

    def needs_scan(self, table: str, column: str) -> bool:
        """Tell whether SET NOT NULL must read every row: not NOT NULL yet, no validated CHECK proves it."""
        key = (table, column)
        return key not in self.not_null and key not in self.proven_not_null

    def rename_table(self, old: str, new: str) -> None:
        if old in self.new_tables:
            self.new_tables.add(new)
        self._move(lambda key: (new, key[1]) if key[0] == old else key)
        self.checks = {((new, k[1]) if k[0] == old else k): v for k, v in self.checks.items()}

    def rename_column(self, table: str, old: str, new: str) -> None:
        self._move(lambda key: (table, new) if key == (table, old) else key)

    def _move(self, rename: Rename) -> None:
        self.new_columns = {rename(k) for k in self.new_columns}
        self.types = {rename(k): v for k, v in self.types.items()}
        self.not_null = {rename(k) for k in self.not_null}
        self.proven_not_null = {rename(k) for k in self.proven_not_null}
