"""The restore drill: restore a database's newest backup into scratch, check it, record it, clean up."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guard.backup.builder import require_backup_dir
from guard.backup.repo.manifest import ESCAPES, UNSAFE, Manifest
from guard.backup.repo.permissions import FILE
from guard.backup.repo.repository import Repository
from guard.backup.restorer import (
    RestoreResult,
    discard_scratch,
    failure_text,
    restore_backup,
    scratch_name,
)
from guard.backup.selection import Candidate, newest_first, others
from guard.backup.source import Wanted, configured_source
from guard.config.redact import redact
from guard.config.settings import Settings
from guard.db.scratch import ScratchClaim
from guard.findings.finding import CheckResult
from guard.history import events
from guard.plural import plural


@dataclass(frozen=True)
class DrillResult:
    """Whether the newest backup restored into a pair as consistent as its manifest says, and how fast."""

    ok: bool
    duration_s: float
    detail: str
    backup_id: str | None = None
    checks: list[CheckResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backup": self.backup_id,
            "restore_s": round(self.duration_s, 3),
            "detail": self.detail,
            "checks": [c.to_json() for c in self.checks],
        }


def _judged(result: DrillResult) -> tuple[str, dict[str, object]]:
    outcome = events.OK if result.ok else events.FAILED
    return outcome, {
        "backup": result.backup_id,
        "restore_s": round(result.duration_s, 3),
        "detail": redact(result.detail)[:500],
    }


@events.recorded(events.DRILL, _judged)
def run_drill(settings: Settings, source: Wanted | None = None) -> DrillResult:
    """Drill the newest backup of a source (default: the configured database's).

    Anything that stops the drill makes it a failed drill, never a crash; so does a newest backup that
    cannot be read, which is named rather than stepped over for an older one.
    """
    started = time.perf_counter()
    db_name = scratch_name(settings.drill_database_prefix)
    url = settings.require_database_url() if settings.database_url else None
    claim = ScratchClaim(url, db_name, settings.swept_prefixes())
    folder: Path | None = None
    try:
        repo = Repository.open(require_backup_dir(settings), create=False)
        folder = repo.restores / db_name
        wanted = source or configured_source(settings.require_database_url())
        result = _drill(settings, repo, wanted, db_name, folder)
    except Exception as exc:  # a drill that could not run is a failed drill, whatever stopped it
        result = DrillResult(
            False, time.perf_counter() - started, f"drill could not run: {failure_text(exc)}"
        )
    finally:
        left = discard_scratch(settings, db_name, folder)
        claim.close()
    if left is not None:
        result = replace(result, detail=f"{result.detail}; {left}")
    _record(settings, result)
    return result


def _drill(settings: Settings, repo: Repository, wanted: Wanted, db_name: str, folder: Path) -> DrillResult:
    newest = _newest(repo, wanted)
    if newest is None:
        held = others(repo, wanted)
        also = f"; the repository holds backups of {', '.join(held)} (see --source)" if held else ""
        return DrillResult(False, 0.0, f"no backup of {wanted.label} to drill{also}")
    if newest.manifest is None:
        detail = f"newest backup {newest.backup_id} cannot be read ({newest.problem}); not drilled"
        return DrillResult(False, 0.0, detail, newest.backup_id)
    restored = restore_backup(settings, newest.backup_id, target_db=db_name, uploads_dir=folder)
    return judge(newest.manifest, restored)


def judge(manifest: Manifest, restored: RestoreResult) -> DrillResult:
    """Pass when every check ran and the restored files miss no more than the backup said it missed."""
    errors = [c.name for c in restored.checks if c.error is not None]
    expected = sum(1 for m in manifest.missing if m.kind != UNSAFE)
    escapes = sum(1 for m in manifest.missing if m.kind == ESCAPES)
    lost = sum(c.counts.get("missing_file", 0) for c in restored.checks if c.name == "files")
    base = f"restored backup {manifest.id} in {restored.duration_s:.1f}s"
    if errors:
        ok, detail = False, f"{base}; checks could not run: {', '.join(errors)}"
    elif lost > expected:
        ok, detail = False, f"{base}; {plural(lost - expected, 'referenced file')} did not come back"
    else:
        ok = True
        detail = (
            f"{base}; every referenced file the backup holds came back "
            f"({plural(expected - escapes, 'was', 'were')} already missing at backup time)"
        )
    if restored.notes:
        detail += f"; {'; '.join(restored.notes)}"
    if restored.skipped:
        detail += f"; skipped: {'; '.join(restored.skipped)}"
    return DrillResult(ok, restored.duration_s, detail, manifest.id, restored.checks)


def _newest(repo: Repository, wanted: Wanted) -> Candidate | None:
    """Return the source's newest backup, or an unreadable one newer than it (its source unknown)."""
    return next(newest_first(repo, wanted), None)


def _record(settings: Settings, result: DrillResult) -> None:
    """Append the verdict to BACKUP_DIR/drills.jsonl, when there is a repository to append to."""
    if settings.backup_dir is None or not settings.backup_dir.is_dir():
        return
    line = {
        "at": datetime.now(UTC).isoformat(),
        "ok": result.ok,
        "backup": result.backup_id,
        "restore_s": round(result.duration_s, 3),
        "detail": result.detail,
    }
    try:
        fd = os.open(settings.backup_dir / "drills.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
    except OSError:
        pass  # the result itself still says pass or fail; the log is a convenience
