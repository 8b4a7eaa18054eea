"""The core's imports, read from its source: no Celery or watchdog, Redis only where it is used, no CLI."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

GUARD = Path(__file__).resolve().parents[2] / "guard"
BROKER_AND_WATCHER = ("celery", "kombu", "watchdog")
# `python -m guard` starts the command line: the one module outside guard/cli that may import it
ENTRY_POINT = GUARD / "__main__.py"
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class Imported:
    """One module named by an import statement, where it stands and whether a function holds it."""

    module: str
    where: str
    in_function: bool


def imported(path: Path) -> Iterator[Imported]:
    """Yield every module an import in this file names, typing-only imports left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    yield from _walk(tree.body, str(path.relative_to(GUARD.parent)), in_function=False)


def _walk(nodes: Iterable[ast.AST], rel: str, in_function: bool) -> Iterator[Imported]:
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (Imported(a.name, f"{rel}:{node.lineno}", in_function) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for module in (node.module, *(f"{node.module}.{a.name}" for a in node.names)):
                yield Imported(module, f"{rel}:{node.lineno}", in_function)
        typing_only = isinstance(node, ast.If) and _is_type_checking(node.test)
        children = node.orelse if typing_only else ast.iter_child_nodes(node)
        yield from _walk(children, rel, in_function or isinstance(node, FUNCTIONS))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def core_imports(*, skip: tuple[Path, ...] = ()) -> list[Imported]:
    """Return every import of every module under guard/, but for the folders or files in skip."""
    found: list[Imported] = []
    for path in sorted(GUARD.rglob("*.py")):
        if not any(path == s or s in path.parents for s in skip):
            found.extend(imported(path))
    return found


def names(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_scan_sees_imports_in_functions_branches_and_handlers() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import a\n"
        "if TYPE_CHECKING:\n    import typing_only\n"
        "try:\n    import b\nexcept ImportError:\n    import c\n"
        "def f():\n    if True:\n        from d import x\n"
        "class K:\n    def m(self):\n        import e\n"
    )
    seen = {(i.module, i.in_function) for i in _walk(ast.parse(source).body, "sample.py", False)}
    assert seen == {
        ("typing", False),
        ("typing.TYPE_CHECKING", False),
        ("a", False),
        ("b", False),
        ("c", False),
        ("d", True),
        ("d.x", True),
        ("e", True),
    }


def test_the_core_imports_neither_celery_nor_watchdog() -> None:
    found = [i.where + " " + i.module for i in core_imports() if names(i.module, BROKER_AND_WATCHER)]
    assert found == []


def test_the_core_imports_redis_only_inside_the_function_that_needs_it() -> None:
    found = [i.where for i in core_imports() if names(i.module, ("redis",)) and not i.in_function]
    assert found == []


def test_nothing_below_the_command_line_imports_it() -> None:
    found = [
        i.where + " " + i.module
        for i in core_imports(skip=(GUARD / "cli", ENTRY_POINT))
        if names(i.module, ("guard.cli",))
    ]
    assert found == []


def test_no_two_modules_of_guard_share_a_file_name() -> None:
    """A name in a traceback says where it lives (README, Architecture)."""
    seen: dict[str, list[str]] = {}
    for path in sorted(GUARD.rglob("*.py")):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(GUARD.parent)))
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}
