"""The lint's rules: which statements of the pending migrations would lock or break the running app.

Each pending migration is read in order, statement by statement, against a Deployment (the live
database plus what the earlier pending statements did), so "existing table", a column's current
type and a validated CHECK are known where each statement runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, VariableSetKind
from pglast.stream import RawStream

from guard.lint.deployment import Deployment
from guard.lint.facts import Facts, column_name
from guard.lint.script import Script, Statement
from guard.lint.typechange import ColumnType, rewrites, type_from_node

# ALTER TABLE subcommands that take only SHARE UPDATE EXCLUSIVE: app reads and writes never wait on it.
QUIET_SUBCOMMANDS = frozenset(
    {
        AlterTableType.AT_ValidateConstraint,
        AlterTableType.AT_SetStatistics,
        AlterTableType.AT_ClusterOn,
        AlterTableType.AT_DropCluster,
    }
)
INDEXED_CONSTRAINTS = {
    ConstrType.CONSTR_UNIQUE: "UNIQUE",
    ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
    ConstrType.CONSTR_EXCLUSION: "EXCLUDE",
}


@dataclass(frozen=True)
class Hazard:
    """One rule broken by one statement of one migration; `silenced` when the file allows the rule."""

    rule: str
    migration: str
    statement: Statement
    reason: str
    silenced: bool = False


@dataclass
class _File:
    """What one file's reading has found so far, and whether a lock_timeout is in force."""

    name: str
    script: Script
    lock_timeout: bool = False
    found: list[Hazard] = field(default_factory=list)

    def add(self, rule: str, statement: Statement, reason: str) -> None:
        self.found.append(Hazard(rule, self.name, statement, reason, rule in self.script.allowed))


def lint(migrations: Sequence[tuple[str, Script]], facts: Facts) -> list[Hazard]:
    """Return every hazard of the pending migrations (name, parsed file), read in order."""
    deployment = Deployment.on(facts)
    found: list[Hazard] = []
    for name, script in migrations:
        file = _File(name, script)
        for statement in script.statements:
            _read(statement, file, deployment)
        found += file.found
    return found


def _read(statement: Statement, file: _File, d: Deployment) -> None:
    """Judge one statement, then record what it does to the deployment."""
    node = statement.node
    if isinstance(node, ast.VariableSetStmt) and (
        node.kind == VariableSetKind.VAR_RESET_ALL or node.name == "lock_timeout"
    ):
        file.lock_timeout = _sets_a_timeout(node)
    if len(file.script.statements) > 1 and _concurrent(node):
        file.add(
            "concurrently_not_alone",
            statement,
            "CONCURRENTLY cannot run in a transaction block, and Prisma's native engine sends the whole "
            "file as one query (prisma/orm#14456): put this statement alone in its own migration",
        )
    locked = list(_judge(statement, file, d))
    if locked and not file.lock_timeout:
        tables = ", ".join(dict.fromkeys(locked))
        file.add(
            "lock_timeout_missing",
            statement,
            f"takes a lock on {tables} with no SET lock_timeout before it in this file: queued behind one "
            "long query it stalls every query after it; start the file with SET lock_timeout = '2s'",
        )


def _judge(statement: Statement, file: _File, d: Deployment) -> Iterator[str]:
    """Add the statement's hazards; yield each existing table it locks against the app's reads or writes."""
    node = statement.node
    if isinstance(node, ast.CreateStmt):
        yield from _create_table(node, d)
    elif isinstance(node, ast.CreateTableAsStmt) and node.into and node.into.rel:
        d.create_table(str(node.into.rel.relname))
    elif isinstance(node, ast.IndexStmt) and node.relation:
        yield from _create_index(node, statement, file, d)
    elif isinstance(node, ast.AlterTableStmt) and node.relation and node.objtype == ObjectType.OBJECT_TABLE:
        yield from _alter_table(node, statement, file, d)
    elif isinstance(node, ast.RenameStmt) and node.relation:
        yield from _rename(node, statement, file, d)
    elif isinstance(node, ast.DropStmt):
        yield from _drop(node, statement, file, d)
    elif isinstance(node, ast.CreateTrigStmt) and node.relation:
        yield from _existing(d, str(node.relation.relname))
    elif isinstance(node, ast.TruncateStmt | ast.LockStmt):
        for relation in node.relations or ():
            if isinstance(relation, ast.RangeVar):
                yield from _existing(d, str(relation.relname))


def _create_table(node: ast.CreateStmt, d: Deployment) -> Iterator[str]:
    assert node.relation is not None
    table = str(node.relation.relname)
    for parent in node.inhRelations or ():  # PARTITION OF / INHERITS lock the parent
        if isinstance(parent, ast.RangeVar):
            yield from _existing(d, str(parent.relname))
    d.create_table(table)
    for element in node.tableElts or ():
        constraints = element.constraints if isinstance(element, ast.ColumnDef) else (element,)
        for constraint in constraints or ():
            if isinstance(constraint, ast.Constraint) and constraint.contype == ConstrType.CONSTR_FOREIGN:
                yield from _referenced(constraint, d)
        if isinstance(element, ast.ColumnDef) and element.colname and element.typeName:
            d.add_column(table, str(element.colname), type_from_node(element.typeName), _not_null(element))


def _create_index(node: ast.IndexStmt, statement: Statement, file: _File, d: Deployment) -> Iterator[str]:
    assert node.relation is not None
    table = str(node.relation.relname)
    if node.idxname:
        d.new_indexes.add(str(node.idxname))
    if node.concurrent or not d.existing(table):
        return
    file.add(
        "index_not_concurrent",
        statement,
        f'CREATE INDEX on existing table "{table}" blocks its writes while the index builds; '
        "use CREATE INDEX CONCURRENTLY, alone in its own migration",
    )
    yield f'"{table}"'


def _alter_table(node: ast.AlterTableStmt, statement: Statement, file: _File, d: Deployment) -> Iterator[str]:
    assert node.relation is not None
    table = str(node.relation.relname)
    for command in node.cmds or ():
        if not isinstance(command, ast.AlterTableCmd):
            continue
        if command.subtype not in QUIET_SUBCOMMANDS:
            yield from _existing(d, table)
        yield from _alter_command(table, command, statement, file, d)


def _alter_command(
    table: str, command: ast.AlterTableCmd, statement: Statement, file: _File, d: Deployment
) -> Iterator[str]:
    """Judge one subcommand of an ALTER TABLE; yield the other tables it locks (a foreign key's target)."""
    kind, column, existing = command.subtype, str(command.name or ""), d.existing(table)
    if kind == AlterTableType.AT_AddConstraint and isinstance(command.def_, ast.Constraint):
        yield from _add_constraint(table, command.def_, statement, file, d)
    elif kind == AlterTableType.AT_ValidateConstraint:
        d.validate(table, column)
    elif kind == AlterTableType.AT_AddColumn and isinstance(command.def_, ast.ColumnDef):
        definition = command.def_
        if definition.colname and definition.typeName:
            d.add_column(
                table, str(definition.colname), type_from_node(definition.typeName), _not_null(definition)
            )
    elif kind == AlterTableType.AT_SetNotNull:
        if existing and d.needs_scan(table, column):
            file.add(
                "not_null_without_check",
                statement,
                f'SET NOT NULL on "{table}"."{column}" scans every row under an ACCESS EXCLUSIVE lock; first '
                f'ADD CONSTRAINT ... CHECK ("{column}" IS NOT NULL) NOT VALID and VALIDATE CONSTRAINT it, '
                "then PostgreSQL skips the scan",
            )
        d.not_null.add((table, column))
    elif kind == AlterTableType.AT_AlterColumnType and isinstance(command.def_, ast.ColumnDef):
        _change_type(table, column, command.def_, statement, file, d)
    elif kind == AlterTableType.AT_DropColumn and d.existing_column(table, column):
        file.add(
            "drop_column",
            statement,
            f'the running app still reads "{table}"."{column}": deploy code that no longer uses it first, '
            "then drop it in a later migration",
        )


def _add_constraint(
    table: str, constraint: ast.Constraint, statement: Statement, file: _File, d: Deployment
) -> Iterator[str]:
    existing, validated = d.existing(table), not constraint.skip_validation
    name = str(constraint.conname) if constraint.conname else None
    if constraint.contype == ConstrType.CONSTR_CHECK:
        if existing and validated:
            file.add(
                "constraint_without_not_valid",
                statement,
                f'ADD CONSTRAINT ... CHECK scans every row of "{table}" under an ACCESS EXCLUSIVE lock; '
                "add it NOT VALID, then VALIDATE CONSTRAINT it in a later statement",
            )
        d.add_check(table, name, constraint.raw_expr, validated)
    elif constraint.contype == ConstrType.CONSTR_FOREIGN:
        referenced = list(_referenced(constraint, d))
        if existing and validated:
            also = f" or to {referenced[0]}" if referenced else ""
            file.add(
                "constraint_without_not_valid",
                statement,
                f'ADD CONSTRAINT ... FOREIGN KEY scans every row of "{table}" while no one can write to '
                f"it{also} (SHARE ROW EXCLUSIVE); add it NOT VALID, then VALIDATE CONSTRAINT it in a later "
                "statement",
            )
        yield from referenced
    elif constraint.contype in INDEXED_CONSTRAINTS and existing and not constraint.indexname:
        what = INDEXED_CONSTRAINTS[constraint.contype]
        file.add(
            "index_not_concurrent",
            statement,
            f'ADD CONSTRAINT ... {what} builds an index under an ACCESS EXCLUSIVE lock on "{table}"; '
            "build it with CREATE UNIQUE INDEX CONCURRENTLY alone in its migration, then "
            f"ADD CONSTRAINT ... {what} USING INDEX",
        )


def _change_type(
    table: str, column: str, definition: ast.ColumnDef, statement: Statement, file: _File, d: Deployment
) -> None:
    if definition.typeName is None:
        return
    new = type_from_node(definition.typeName, RawStream()(definition.typeName))
    old = d.types.get((table, column))
    d.types[(table, column)] = new
    if not d.existing(table):
        return
    using = not _is_column(definition.raw_default, column, new)
    if not using and old is not None and not rewrites(old, new):
        return
    if old is None:
        change = f'changing "{table}"."{column}" (of a type guard does not know) to {new}'
    else:
        change = f'changing "{table}"."{column}" from {old} to {new}{" with USING" if using else ""}'
    file.add(
        "column_type_rewrite",
        statement,
        f"{change} rewrites the whole table and its indexes under an ACCESS EXCLUSIVE lock; add a new "
        "column, backfill it in batches, then switch over",
    )


def _rename(node: ast.RenameStmt, statement: Statement, file: _File, d: Deployment) -> Iterator[str]:
    assert node.relation is not None
    table, new = str(node.relation.relname), str(node.newname or "")
    if node.renameType == ObjectType.OBJECT_TABLE:
        if d.existing(table):
            file.add(
                "rename_table",
                statement,
                f'the running app still reads "{table}" by its old name: keep the old name working (a view) '
                "until no running code uses it",
            )
            yield f'"{table}"'
        d.rename_table(table, new)
    elif node.renameType == ObjectType.OBJECT_COLUMN and node.relationType == ObjectType.OBJECT_TABLE:
        column = str(node.subname or "")
        if d.existing_column(table, column):
            file.add(
                "rename_column",
                statement,
                f'the running app still reads "{table}"."{column}" by its old name: add "{new}", write both, '
                "backfill, switch reads, then drop the old column in a later migration",
            )
        yield from _existing(d, table)
        d.rename_column(table, column, new)
    elif node.renameType == ObjectType.OBJECT_TABCONSTRAINT:
        yield from _existing(d, table)


def _drop(node: ast.DropStmt, statement: Statement, file: _File, d: Deployment) -> Iterator[str]:
    names = [
        str(n[-1].sval) for n in node.objects or () if isinstance(n, tuple) and isinstance(n[-1], ast.String)
    ]
    if node.removeType == ObjectType.OBJECT_TABLE:
        for table in names:
            if d.existing(table):
                file.add(
                    "drop_table",
                    statement,
                    f'the running app still reads "{table}": deploy code that no longer uses it first, then '
                    "drop it in a later migration",
                )
                yield f'"{table}"'
    elif node.removeType == ObjectType.OBJECT_INDEX and not node.concurrent:
        for index in names:
            if index not in d.new_indexes:
                yield f'the table of "{index}"'


def _existing(d: Deployment, table: str) -> Iterator[str]:
    if d.existing(table):
        yield f'"{table}"'


def _referenced(constraint: ast.Constraint, d: Deployment) -> Iterator[str]:
    """Yield a foreign key's referenced table when it exists: the key locks it (SHARE ROW EXCLUSIVE)."""
    if constraint.pktable is not None:
        yield from _existing(d, str(constraint.pktable.relname))


def _not_null(definition: ast.ColumnDef) -> bool:
    kinds = {c.contype for c in definition.constraints or () if isinstance(c, ast.Constraint)}
    return bool(definition.is_not_null) or bool(
        kinds & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}
    )


def _is_column(using: ast.Node | None, column: str, new: ColumnType) -> bool:
    """Tell whether a USING expression is absent, the column itself, or the column cast to the new type."""
    if using is None:
        return True
    if isinstance(using, ast.TypeCast) and using.typeName is not None:
        return type_from_node(using.typeName) == new and _is_column(using.arg, column, new)
    return column_name(using) == column


def _concurrent(node: ast.Node) -> bool:
    """Tell whether a statement runs CONCURRENTLY (and so refuses to run inside a transaction block)."""
    if isinstance(node, ast.IndexStmt | ast.DropStmt):
        return bool(node.concurrent)
    if isinstance(node, ast.ReindexStmt):
        return any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in node.params or ())
    if isinstance(node, ast.AlterTableStmt):
        return any(
            isinstance(c, ast.AlterTableCmd)
            and isinstance(c.def_, ast.PartitionCmd)
            and bool(c.def_.concurrent)
            for c in node.cmds or ()
        )
    return False


def _sets_a_timeout(node: ast.VariableSetStmt) -> bool:
    """Tell whether a SET leaves a lock_timeout in force: a value above zero (RESET, DEFAULT: none)."""
    if node.kind != VariableSetKind.VAR_SET_VALUE or not node.args:
        return False
    value = node.args[0].val if isinstance(node.args[0], ast.A_Const) else None
    if isinstance(value, ast.Integer):
        return (value.ival or 0) > 0
    text = str(value.fval if isinstance(value, ast.Float) else getattr(value, "sval", "")).strip()
    number = text[: len(text) - len(text.lstrip("0123456789."))]  # '2s' -> '2', '500ms' -> '500'
    try:
        return float(number) > 0
    except ValueError:
        return False
