"""`guard repair orphans` on a real PostgreSQL and a real uploads folder: quarantine, undo, purge."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backup.repo.repository import Repository
from guard.db.database import Database
from guard.errors import UsageError
from guard.fs.root import UploadsRoot
from guard.repair import journal, orphans
from guard.repair.quarantine import Quarantine
from guard.repair.reversal import UndoRefused, undo_run
from tests.acceptance.cli import guard
from tests.integration.repair_support import env_for, populate, settings_for, uploads

pytestmark = pytest.mark.integration

ORPHANS = [f"uploads/ads/orphan-{n}.webp" for n in range(3)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quarantine_run(db: Database, db_url: str, root: Path, folder: Path) -> tuple[str, list[str]]:
    settings = settings_for(db_url, root)
    planned = orphans.plan(settings)
    quarantine = Quarantine(folder, UploadsRoot(root))
    run_id = journal.open_run(db, orphans.KIND, None, detail={"quarantine": str(quarantine.folder)})
    moved, skipped = orphans.apply(db, settings, planned, quarantine, run_id)
    assert not skipped
    return run_id, [e.path for e in moved]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem (a tmpfs mount), so a move must copy."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_orphans_move_into_quarantine_with_a_manifest_and_a_rerun_moves_nothing(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    sums = {p: digest(root / p) for p in ORPHANS}
    run_id, moved = quarantine_run(db, db_url, root, tmp_path / "q")
    assert moved == ORPHANS
    assert not any((root / p).exists() for p in ORPHANS)
    assert (root / "uploads/ads/kept.webp").exists()
    for p in ORPHANS:
        assert digest(tmp_path / "q" / run_id / p) == sums[p]
    manifest = json.loads((tmp_path / "q" / run_id / "manifest.json").read_text())
    assert {(f["path"], f["sha256"], f["copied_across_filesystems"]) for f in manifest["files"]} == {
        (p, sums[p], False) for p in ORPHANS
    }
    assert os.stat(tmp_path / "q" / run_id / "manifest.json").st_mode & 0o077 == 0
    assert orphans.plan(settings_for(db_url, root)) == []
    assert [c.before for c in journal.changes_of(db, run_id)] == ORPHANS


def test_a_file_a_row_came_to_name_after_the_plan_is_not_moved(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    settings = settings_for(db_url, root)
    planned = orphans.plan(settings)
    db.execute(
        "INSERT INTO ad_images (ad_id, filename, file_path) VALUES (1, 'o', 'uploads/ads/orphan-1.webp')"
    )
    quarantine = Quarantine(tmp_path / "q", UploadsRoot(root))
    run_id = journal.open_run(db, orphans.KIND, None, detail={"quarantine": str(quarantine.folder)})
    moved, skipped = orphans.apply(db, settings, planned, quarantine, run_id)
    assert [s.path for s in skipped] == ["uploads/ads/orphan-1.webp"]
    assert (root / "uploads/ads/orphan-1.webp").exists()
    assert [e.path for e in moved] == [ORPHANS[0], ORPHANS[2]]


def test_across_filesystems_files_are_copied_verified_and_unlinked(
    db: Database, db_url: str, tmp_path: Path, tmpfs: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    sums = {p: digest(root / p) for p in ORPHANS}
    mtimes = {p: os.stat(root / p).st_mtime_ns for p in ORPHANS}
    run_id, moved = quarantine_run(db, db_url, root, tmpfs / "q")
    assert moved == ORPHANS and not any((root / p).exists() for p in ORPHANS)
    manifest = json.loads((tmpfs / "q" / run_id / "manifest.json").read_text())
    assert all(f["copied_across_filesystems"] for f in manifest["files"])
    assert {p: digest(tmpfs / "q" / run_id / p) for p in ORPHANS} == sums
    assert not list((tmpfs / "q" / run_id / "uploads" / "ads").glob(".*guard-tmp"))
    undo_run(settings_for(db_url, root), run_id)
    assert {p: digest(root / p) for p in ORPHANS} == sums
    assert {p: os.stat(root / p).st_mtime_ns for p in ORPHANS} == mtimes


def test_undo_puts_every_file_back(db: Database, db_url: str, tmp_path: Path) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    sums = {p: digest(root / p) for p in ORPHANS}
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    undone = undo_run(settings_for(db_url, root), run_id)
    assert undone.reverted == 3 and not undone.failed
    assert {p: digest(root / p) for p in ORPHANS} == sums
    assert journal.find_run(db, run_id).undone_at is not None


def test_undo_refuses_when_something_is_at_the_original_path(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    (root / ORPHANS[1]).write_bytes(b"a new file with the old name")
    with pytest.raises(UndoRefused, match="orphan-1.webp"):
        undo_run(settings_for(db_url, root), run_id)
    assert not (root / ORPHANS[0]).exists()  # nothing was put back
    assert (root / ORPHANS[1]).read_bytes() == b"a new file with the old name"
    assert (tmp_path / "q" / run_id / ORPHANS[0]).exists()


def test_a_quarantine_folder_inside_the_uploads_root_is_refused(db: Database, tmp_path: Path) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    with pytest.raises(UsageError, match="inside the uploads root"):
        Quarantine(root / "quarantine", UploadsRoot(root))


def test_an_uploads_folder_swapped_for_a_symlink_after_the_plan_is_never_followed(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    settings = settings_for(db_url, root)
    planned = orphans.plan(settings)
    assert planned == ORPHANS
    # Between the plan and the move the folder becomes a link to a folder outside the root.
    outside = tmp_path / "outside"
    os.rename(root / "uploads" / "ads", outside)
    (root / "uploads" / "ads").symlink_to(outside, target_is_directory=True)
    sums = {p.name: digest(p) for p in outside.iterdir()}
    quarantine = Quarantine(tmp_path / "q", UploadsRoot(root))
    run_id = journal.open_run(db, orphans.KIND, None, detail={"quarantine": str(quarantine.folder)})
    moved, skipped = orphans.apply(db, settings, planned, quarantine, run_id)
    assert moved == [] and sorted(s.path for s in skipped) == ORPHANS
    assert {p.name: digest(p) for p in outside.iterdir()} == sums  # nothing outside the root touched
    assert (root / "uploads" / "ads").is_symlink()
    assert not [p for p in (tmp_path / "q").rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert journal.changes_of(db, run_id) == []


def test_an_uploads_folder_swapped_for_a_symlink_during_the_moves_is_never_followed(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    outside = tmp_path / "outside"
    real_move = orphans.move_file

    def move_then_swap(src: int, src_name: str, dst: int, dst_name: str) -> object:
        moved = real_move(src, src_name, dst, dst_name)
        if not outside.exists():  # right after the first move, past the re-check of the batch
            os.rename(root / "uploads" / "ads", outside)
            (root / "uploads" / "ads").symlink_to(outside, target_is_directory=True)
        return moved

    monkeypatch.setattr(orphans, "move_file", move_then_swap)
    settings = settings_for(db_url, root)
    planned = orphans.plan(settings)
    quarantine = Quarantine(tmp_path / "q", UploadsRoot(root))
    run_id = journal.open_run(db, orphans.KIND, None, detail={"quarantine": str(quarantine.folder)})
    moved, skipped = orphans.apply(db, settings, planned, quarantine, run_id)
    assert [e.path for e in moved] == [ORPHANS[0]]
    assert [s.path for s in skipped] == ORPHANS[1:]
    assert all("without following a link" in s.reason for s in skipped)
    assert sorted(p.name for p in outside.iterdir()) == ["kept.webp", "orphan-1.webp", "orphan-2.webp"]
    assert not (tmp_path / "q" / run_id / ORPHANS[1]).exists()


def test_a_symlinked_file_is_never_moved(db: Database, db_url: str, tmp_path: Path) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.webp").write_bytes(b"secret")
    (root / "uploads" / "ads" / "link.webp").symlink_to(outside / "secret.webp")
    run_id, moved = quarantine_run(db, db_url, root, tmp_path / "q")
    assert "uploads/ads/link.webp" not in moved
    assert (outside / "secret.webp").read_bytes() == b"secret"
    assert (root / "uploads" / "ads" / "link.webp").is_symlink()


def test_an_orphan_younger_than_the_grace_period_is_not_moved(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    young = root / "uploads" / "ads" / "just-uploaded.webp"
    young.write_bytes(b"the app is still writing its row")
    os.utime(young, (time.time() - 60, time.time() - 60))  # 1 minute old, ORPHAN_GRACE is 600 s
    assert orphans.plan(settings_for(db_url, root)) == ORPHANS
    done = guard(
        "repair",
        "orphans",
        "--quarantine",
        str(tmp_path / "q"),
        "--apply",
        "--no-backup",
        "--json",
        env=env_for(db_url, root),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["moved"] == 3
    assert young.read_bytes() == b"the app is still writing its row"
    assert not (
        tmp_path / "q" / json.loads(done.stdout)["repair_id"] / "uploads/ads/just-uploaded.webp"
    ).exists()
    # The same file past the grace period is an orphan like the others.
    os.utime(young, (time.time() - 3600, time.time() - 3600))
    assert orphans.plan(settings_for(db_url, root)) == ["uploads/ads/just-uploaded.webp"]


def test_apply_with_backup_dir_takes_a_backup_first_and_records_its_id(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    sums = {p: digest(root / p) for p in ORPHANS}
    backups = tmp_path / "backups"
    env = env_for(db_url, root, backups)
    done = guard("repair", "orphans", "--quarantine", str(tmp_path / "q"), "--apply", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["moved"] == 3 and result["backup_id"] in Repository.open(backups, create=False).ids()
    assert journal.find_run(db, result["repair_id"]).backup_id == result["backup_id"]
    # The backup was taken before the move: it holds the orphans as they were.
    backed = {
        e.path: e.sha256 for e in Repository.open(backups, create=False).load(result["backup_id"]).files
    }
    assert {p: backed.get(p) for p in ORPHANS} == sums


def test_the_command_plans_applies_lists_undoes_and_purges(db: Database, db_url: str, tmp_path: Path) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    env = env_for(db_url, root)
    q = str(tmp_path / "q")
    plan = guard("repair", "orphans", "--quarantine", q, "--json", env=env)
    assert plan.returncode == 1 and json.loads(plan.stdout)["files"] == ORPHANS
    refused = guard("repair", "orphans", "--quarantine", q, "--apply", env=env)
    assert refused.returncode == 2 and "BACKUP_DIR" in refused.stderr and (root / ORPHANS[0]).exists()
    done = guard("repair", "orphans", "--quarantine", q, "--apply", "--no-backup", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["moved"] == 3 and Path(result["manifest"]).exists()
    kept = guard("repair", "orphans", "--quarantine", q, "--purge-quarantine", "--older-than", "30d", env=env)
    assert kept.returncode == 0 and (tmp_path / "q" / result["repair_id"]).exists()
    purged = guard(
        "repair", "orphans", "--quarantine", q, "--purge-quarantine", "--older-than", "0s", "--json", env=env
    )
    assert json.loads(purged.stdout)["purged"] == [{"run": result["repair_id"], "files": 3}]
    assert not (tmp_path / "q" / result["repair_id"]).exists()
    gone = guard("repair", "undo", result["repair_id"], env=env)
    assert gone.returncode == 1 and "no longer in the quarantine folder" in gone.stderr
