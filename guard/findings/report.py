"""Render check results for people (a table and examples) and for machines (one JSON object)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from guard.errors import EXIT_FINDINGS, EXIT_OK, EXIT_UNREACHABLE
from guard.findings.finding import CheckResult
from guard.fs.paths import printable

UNREACHABLE_KINDS = frozenset({"database_unreachable", "uploads_unreadable"})


def exit_code(results: Sequence[CheckResult]) -> int:
    """Return 3 when something could not be reached, 1 for findings, 0 when all is well."""
    for result in results:
        if result.error is not None or any(result.counts.get(k) for k in UNREACHABLE_KINDS):
            return EXIT_UNREACHABLE
    return EXIT_OK if all(r.ok for r in results) else EXIT_FINDINGS


def as_json(results: Sequence[CheckResult], extra: dict[str, Any] | None = None) -> str:
    document: dict[str, Any] = {"ok": all(r.ok for r in results)}
    document.update(extra or {})
    document["checks"] = [r.to_json() for r in results]
    return json.dumps(document, ensure_ascii=False)


def write_human(results: Sequence[CheckResult], out: TextIO) -> None:
    """Write a summary table, then the examples of each kind that has findings."""
    out.write(f"{'CHECK':<14}{'RESULT':<8}{'FOUND':>9}{'TIME':>10}\n")
    for result in results:
        verdict = "ERROR" if result.error else ("ok" if result.ok else "FAIL")
        total = sum(result.counts.values())
        out.write(f"{result.name:<14}{verdict:<8}{total:>9,}{result.duration_s:>9.2f}s\n")
        for kind, count in result.counts.items():
            if count:
                out.write(f"  {kind:<34}{count:>9,}\n")
        if result.info:
            facts = ", ".join(f"{k.replace('_', ' ')} {_fact(v)}" for k, v in result.info.items())
            out.write(f"  ({printable(facts)})\n")
        if result.error:
            out.write(f"  {result.error}\n")
    for result in results:
        _write_examples(result, out)


def _fact(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _write_examples(result: CheckResult, out: TextIO) -> None:
    if not result.findings:
        return
    out.write(f"\n{result.name}: examples\n")
    for finding in result.findings:
        where = f"  {printable(finding.path)}" if finding.path is not None else ""
        out.write(f"  {finding.kind:<30} {printable(finding.subject)}{where}\n")
        out.write(f"  {'':<30} {printable(finding.message)}\n")
