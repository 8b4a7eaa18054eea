"""Tables for people, drawn with rich: the terminal's width on a terminal, a stable wide layout otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, RenderableType
from rich.table import Table

from guard.findings.finding import CheckResult, Finding
from guard.fs.paths import printable

# Piped output never wraps, so scripts and tests read one record per line.
WIDE = 10_000


def console_for(out: TextIO) -> Console:
    """Return a plain-text rich Console: no markup or highlighting of our data, colour only on a terminal."""
    width = None if out.isatty() else WIDE
    return Console(file=out, width=width, highlight=False, markup=False, emoji=False, soft_wrap=False)


def print_rstripped(console: Console, renderable: RenderableType) -> None:
    """Print without the spaces rich pads a table's last column with, so piped lines end at their text."""
    with console.capture() as captured:
        console.print(renderable)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def new_table(*headers: str, right: Sequence[str] = ()) -> Table:
    """Return a borderless table whose cells fold instead of being cut."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left", overflow="fold")
    return table


def write_human(results: Sequence[CheckResult], out: TextIO, *, show_errors: bool = True) -> None:
    """Write a summary table (every kind with its count, zero included), then examples grouped by kind."""
    console = console_for(out)
    print_rstripped(console, _summary(results))
    for result in results:
        if result.info:
            facts = ", ".join(f"{k.replace('_', ' ')} {_fact(v)}" for k, v in result.info.items())
            console.print(f"{result.name}: {printable(facts)}")
        if result.error and show_errors:
            console.print(f"{result.name}: {printable(result.error)}")
    for result in results:
        if result.findings:
            console.print(f"\n{result.name}: examples")
            print_rstripped(console, _examples(result))


def _summary(results: Sequence[CheckResult]) -> Table:
    table = new_table("CHECK", "RESULT", "FOUND", "TIME", right=("FOUND", "TIME"))
    for result in results:
        verdict = (
            "ERROR" if result.error else ("FAIL" if not result.ok else "warn" if result.warnings else "ok")
        )
        total = sum(result.counts.values())
        table.add_row(printable(result.name), verdict, f"{total:,}", f"{result.duration_s:.2f}s")
        for kind, count in result.counts.items():
            warned = "warn" if count and kind in result.warn_kinds else ""  # shown, does not fail
            table.add_row(f"  {kind}", warned, f"{count:,}", "")
    return table


def _fact(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _examples(result: CheckResult) -> Table:
    with_path = any(f.path is not None for f in result.findings)
    table = new_table("KIND", "SUBJECT", *(["PATH"] if with_path else []), "MESSAGE")
    for finding in grouped(result):
        path = [printable(finding.path or "")] if with_path else []
        table.add_row(finding.kind, printable(finding.subject), *path, printable(finding.message))
    return table


def grouped(result: CheckResult) -> list[Finding]:
    """Return the examples grouped by kind, in the order of the counts, each group in found order."""
    order = {kind: i for i, kind in enumerate(result.counts)}
    return sorted(result.findings, key=lambda f: order.get(f.kind, len(order)))
