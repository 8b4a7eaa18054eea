"""What the live database already holds that the lint's rules depend on: column types, NOT NULL, CHECKs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.enums import BoolExprType, NullTestType

from guard.lint.typechange import ColumnType, type_from_catalog

Row = tuple[Any, ...]


@dataclass(frozen=True)
class LiveColumn:
    table: str
    column: str
    type: ColumnType
    not_null: bool


@dataclass(frozen=True)
class LiveCheck:
    """A CHECK constraint of the live database; its expression parsed as pglast reads a migration's."""

    table: str
    name: str
    expression: ast.Node | None
    validated: bool


@dataclass(frozen=True)
class Facts:
    columns: tuple[LiveColumn, ...] = ()
    checks: tuple[LiveCheck, ...] = ()


def facts_from_rows(columns: Iterable[Row], checks: Iterable[Row]) -> Facts:
    """Build the facts from the rows of the lint_columns and lint_checks queries."""
    return Facts(
        tuple(
            LiveColumn(table, column, type_from_catalog(typname, typmod, is_array, shown), not_null)
            for table, column, typname, typmod, is_array, shown, not_null in columns
        ),
        tuple(
            LiveCheck(table, name, parse_expression(text), validated)
            for table, name, validated, text in checks
        ),
    )


def parse_expression(text: str) -> ast.Node | None:
    """Parse a catalog expression (pg_get_expr's text) with the parser that reads the migrations."""
    try:
        # Parsed, never executed: the parser has no entry point for a bare expression.
        statement = pglast.parse_sql(f"SELECT {text}")[0].stmt
    except pglast.parser.ParseError:
        return None
    if isinstance(statement, ast.SelectStmt) and statement.targetList:
        target = statement.targetList[0]
        return target.val if isinstance(target, ast.ResTarget) else None
    return None


def proves_not_null(expression: ast.Node | None) -> frozenset[str]:
    """Return the columns a CHECK expression holds NOT NULL: `col IS NOT NULL`, alone or AND-ed with others.

    These are the checks PostgreSQL's SET NOT NULL accepts instead of scanning the table (it proves
    `col IS NOT NULL` from a validated CHECK; an AND implies each of its arms).
    """
    if isinstance(expression, ast.NullTest) and expression.nulltesttype == NullTestType.IS_NOT_NULL:
        column = column_name(expression.arg)
        return frozenset([column]) if column else frozenset()
    if isinstance(expression, ast.BoolExpr) and expression.boolop == BoolExprType.AND_EXPR:
        return frozenset(c for arm in expression.args or () for c in proves_not_null(arm))
    return frozenset()


def column_name(node: ast.Node | None) -> str | None:
    """Return the column a ColumnRef names (its last part), or None for any other node."""
    if isinstance(node, ast.ColumnRef) and node.fields and isinstance(node.fields[-1], ast.String):
        return str(node.fields[-1].sval)
    return None
