"""The beat's maintenance: a failed backup, prune or drill is a finding (and a failure); success resolves
it; a backup's missing-at-backup files are findings that the next complete backup resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

import guard.backup as backup
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.continuous.process import run_maintenance
from guard.db.database import Database

pytestmark = pytest.mark.integration


def _open(settings: Settings) -> list[tuple[object, ...]]:
    with Database(settings.require_database_url()) as db:
        return db.fetch_all(
            "SELECT kind, subject, message FROM guard.findings "
            "WHERE resolved_at IS NULL ORDER BY kind, subject"
        )


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    (uploads / "uploads" / "ads" / "here.webp").write_bytes(b"RIFF-here")
    s = Settings(database_url=db_url, uploads_root=uploads, backup_dir=tmp_path / "backups")
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'car-1', 1, 1)")
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES "
            "(1, 1, 'here', 'uploads/ads/here.webp'), (2, 1, 'gone', 'uploads/ads/gone.webp')"
        )
        install(db, s)
    return s


def test_a_failing_backup_becomes_a_finding_without_the_password_and_success_resolves_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: Settings) -> None:
        raise RuntimeError("pg_dump: connection to postgresql://u:pw@db/x failed")

    monkeypatch.setattr(backup, "run_backup", broken)
    outcome = run_maintenance(settings, "backup")
    assert outcome.changes.opened == 1
    assert outcome.failure is not None and "pg_dump" in outcome.failure and "pw@" not in outcome.failure
    [(kind, subject, message)] = _open(settings)
    assert (kind, subject) == ("backup_failed", "backup") and "pw@" not in str(message)
    monkeypatch.undo()
    outcome = run_maintenance(settings, "backup")  # a real backup now
    assert outcome.failure is None
    assert [row[0] for row in _open(settings)] == ["missing_at_backup"]


def test_files_missing_at_backup_are_findings_until_a_backup_has_them(settings: Settings) -> None:
    outcome = run_maintenance(settings, "backup")
    assert outcome.failure is None and outcome.changes.opened == 1
    assert [row[:2] for row in _open(settings)] == [("missing_at_backup", "ad_images:2")]
    assert run_maintenance(settings, "backup").changes.refreshed == 1  # still missing: not a new alert
    (settings.require_uploads_root() / "uploads" / "ads" / "gone.webp").write_bytes(b"RIFF-back")
    assert run_maintenance(settings, "backup").changes.resolved == 1
    assert _open(settings) == []


def test_a_drill_that_cannot_run_and_a_prune_with_nothing_verified_are_failures(settings: Settings) -> None:
    drill = run_maintenance(settings, "drill")  # no repository yet: the drill could not run
    prune = run_maintenance(settings, "prune")
    assert drill.failure is not None and drill.failure.startswith("drill failed: drill could not run")
    assert prune.failure is not None and prune.failure.startswith("prune failed:")
    assert [row[:2] for row in _open(settings)] == [("drill_failed", "drill"), ("prune_failed", "prune")]

    (settings.require_uploads_root() / "uploads" / "ads" / "gone.webp").write_bytes(b"RIFF-back")
    assert run_maintenance(settings, "backup").failure is None
    assert run_maintenance(settings, "drill").failure is None  # restored into scratch, every check passed
    assert run_maintenance(settings, "prune").failure is None
    assert _open(settings) == []
