"""The values every check returns: findings and a check's result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# A graded finding's weight: "error" fails the exit code (and so `predeploy`), "warn" is only shown.
# Findings of checks that grade nothing carry None and count as errors.
Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one subject, such as a row ('ads:17') or a file path."""

    check: str
    kind: str
    subject: str
    message: str
    path: str | None = None
    detail: dict[str, Any] | None = None
    severity: Severity | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "check": self.check,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
        }
        if self.path is not None:
            data["path"] = self.path
        if self.severity is not None:
            data["severity"] = self.severity
        if self.detail:
            data.update(self.detail)
        return data


@dataclass(frozen=True)
class CheckResult:
    """Exact counts per kind and up to `limit` example findings of each kind.

    `warn_kinds` are the kinds whose findings are warnings: counted and shown, but not failing.
    """

    name: str
    counts: dict[str, int]
    findings: tuple[Finding, ...]
    duration_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warn_kinds: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        """Tell whether the check passes: it ran, and found nothing but warnings."""
        return self.error is None and not any(n for k, n in self.counts.items() if k not in self.warn_kinds)

    @property
    def warnings(self) -> int:
        return sum(n for k, n in self.counts.items() if k in self.warn_kinds)

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
        warned = sorted(k for k in self.warn_kinds if self.counts.get(k))
        if warned:
            data["warn_kinds"] = warned  # counted and shown, but they do not fail the check
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
        self.warn_kinds: set[str] = set()

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        if finding.severity == "warn":
            self.warn_kinds.add(finding.kind)
        if self.limit is None or self.counts[finding.kind] <= self.limit:
            self.kept.append(finding)

    def keeps(self, kind: str) -> bool:
        """Tell whether the next finding of this kind is kept as an example (else only counted)."""
        return self.limit is None or self.counts[kind] < self.limit

    def tally(self, kind: str, n: int = 1) -> None:
        """Count findings of no severity that would not be kept, without building them."""
        self.counts[kind] += n

    def merge(self, other: FindingSink) -> None:
        """Take in another sink's counts and kept findings (kinds the two do not share)."""
        self.counts.update(other.counts)
        self.kept.extend(other.kept)
        self.warn_kinds |= other.warn_kinds

    def result(self, duration_s: float, info: dict[str, Any] | None = None) -> CheckResult:
        return CheckResult(
            name=self.check,
            counts=dict(self.counts),
            findings=tuple(self.kept),
            duration_s=duration_s,
            info=info or {},
            warn_kinds=frozenset(self.warn_kinds),
        )
