"""Acknowledged findings: a known finding (who, why, until when) that need not block a deploy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from guard.db.database import Database, Row
from guard.findings.finding import CheckResult, Finding

COLUMNS = "id, check_name, kind, subject, reason, acked_by, acked_at, until"
# An acknowledgement expires by itself: nothing deletes it, it simply stops matching at `until`.
ACTIVE = f"SELECT {COLUMNS} FROM guard.acks WHERE until IS NULL OR until > now() ORDER BY id"
ACK_FINDING = f"""
INSERT INTO guard.acks (check_name, kind, subject, reason, acked_by, until)
SELECT check_name, kind, subject, %(reason)s, %(by)s, %(until)s FROM guard.findings
WHERE id = %(id)s AND resolved_at IS NULL
RETURNING {COLUMNS}
"""
ACK_KIND = f"""
INSERT INTO guard.acks (check_name, kind, subject, reason, acked_by, until)
VALUES (NULL, %(kind)s, NULL, %(reason)s, %(by)s, %(until)s)
RETURNING {COLUMNS}
"""
OPEN_OF_KIND = "SELECT count(*) FROM guard.findings WHERE resolved_at IS NULL AND kind = %s"


@dataclass(frozen=True)
class Ack:
    """One acknowledgement: a kind (in one check, or any), for one subject or every subject."""

    id: int
    check: str | None
    kind: str
    subject: str | None
    reason: str
    by: str
    at: datetime
    until: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> Ack:
        return cls(*row)

    def covers(self, check: str, kind: str, subject: str) -> bool:
        return self.kind == kind and self.check in (None, check) and self.subject in (None, subject)

    @property
    def whole_kind(self) -> bool:
        return self.subject is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check": self.check,
            "kind": self.kind,
            "subject": self.subject,
            "reason": self.reason,
            "by": self.by,
            "at": self.at.isoformat(),
            "until": self.until.isoformat() if self.until else None,
        }

    def describe(self) -> str:
        """Say who acknowledged it, until when and why, in one short phrase."""
        until = f" until {self.until:%Y-%m-%d %H:%M}" if self.until else ""
        return f"by {self.by}{until}: {self.reason}"


@dataclass(frozen=True)
class Acknowledged:
    """A finding a check reported that an acknowledgement covers."""

    finding: Finding
    ack: Ack

    def to_json(self) -> dict[str, Any]:
        return {**self.finding.to_json(), "ack": self.ack.to_json()}


def active(db: Database) -> list[Ack]:
    """Return the acknowledgements that have not expired (by the server's clock)."""
    return [Ack.from_row(r) for r in db.fetch_all(ACTIVE)]


def acknowledge_finding(
    db: Database, finding_id: int, reason: str, by: str, until: datetime | None
) -> Ack | None:
    """Acknowledge one open finding's check, kind and subject; None when no open finding has that id."""
    row = db.fetch_one(ACK_FINDING, {"id": finding_id, "reason": reason, "by": by, "until": until})
    return Ack.from_row(row) if row else None


def acknowledge_kind(
    db: Database, kind: str, reason: str, by: str, until: datetime | None
) -> tuple[Ack, int]:
    """Acknowledge every finding of a kind, open now or later; return it and how many are open now."""
    row = db.fetch_one(ACK_KIND, {"kind": kind, "reason": reason, "by": by, "until": until})
    assert row is not None
    count = db.fetch_one(OPEN_OF_KIND, (kind,))
    return Ack.from_row(row), int(count[0]) if count else 0


def covering(acks: Sequence[Ack], check: str, kind: str, subject: str) -> Ack | None:
    """Return the acknowledgement that covers this finding (the first made), or None."""
    return next((a for a in acks if a.covers(check, kind, subject)), None)


def without_acknowledged(
    results: Sequence[CheckResult], acks: Sequence[Ack]
) -> tuple[list[CheckResult], list[Acknowledged]]:
    """Split the acknowledged findings out of each result: what still blocks, and what is known.

    The results must carry every finding (no limit), so each one is matched; a kind acknowledged as a
    whole takes its exact count. A result whose check errored is never acknowledged away.
    """
    blocking: list[CheckResult] = []
    known: list[Acknowledged] = []
    for result in results:
        if not acks or result.error is not None:
            blocking.append(result)
            continue
        kept: list[Finding] = []
        counts = dict(result.counts)
        for finding in result.findings:
            ack = covering(acks, finding.check, finding.kind, finding.subject)
            if ack is None:
                kept.append(finding)
                continue
            known.append(Acknowledged(finding, ack))
            counts[finding.kind] = max(0, counts.get(finding.kind, 0) - 1)
        blocking.append(replace(result, counts=counts, findings=tuple(kept)))
    return blocking, known


def capped(result: CheckResult, limit: int | None) -> CheckResult:
    """Keep only the first `limit` findings of each kind, as a check run with that limit would."""
    if limit is None:
        return result
    seen: dict[str, int] = {}
    kept = []
    for finding in result.findings:
        seen[finding.kind] = seen.get(finding.kind, 0) + 1
        if seen[finding.kind] <= limit:
            kept.append(finding)
    return replace(result, findings=tuple(kept))
