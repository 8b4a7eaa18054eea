"""Judge check results (the exit code) and render them for machines; guard.cli.tables draws them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from guard.errors import EXIT_FINDINGS, EXIT_OK, EXIT_UNREACHABLE
from guard.findings.finding import CheckResult

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
