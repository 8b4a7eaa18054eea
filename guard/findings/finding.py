"""The values every check returns: findings and a check's result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one subject, such as a row ('ads:17') or a file path."""

    check: str
    kind: str
    subject: str
    message: str
    path: str | None = None
    detail: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "check": self.check,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
        }
        if self.path is not None:
            data["path"] = self.path
        if self.detail:
            data.update(self.detail)
        return data


@dataclass(frozen=True)
class CheckResult:
    """Exact counts per kind and up to `limit` example findings of each kind."""

    name: str
    counts: dict[str, int]
    findings: tuple[Finding, ...]
    duration_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not any(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 3),
            "counts": dict(self.counts),
            "findings": [f.to_json() for f in self.findings],
        }
        if self.info:
            data["info"] = self.info
        if self.error is not None:
            data["error"] = self.error
        return data


class FindingSink:
    """Count every finding exactly and keep only the first `limit` of each kind."""

    def __init__(self, check: str, limit: int | None, kinds: Iterable[str] = ()) -> None:
        self.check = check
        self.limit = limit
        self.counts: Counter[str] = Counter({kind: 0 for kind in kinds})
        self.kept: list[Finding] = []

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        if self.limit is None or self.counts[finding.kind] <= self.limit:
            self.kept.append(finding)

    def merge(self, other: FindingSink) -> None:
        """Take in another sink's counts and kept findings (kinds the two do not share)."""
        self.counts.update(other.counts)
        self.kept.extend(other.kept)

    def result(self, duration_s: float, info: dict[str, Any] | None = None) -> CheckResult:
        return CheckResult(
            name=self.check,
            counts=dict(self.counts),
            findings=tuple(self.kept),
            duration_s=duration_s,
            info=info or {},
        )
