"""A backup that cannot read part of the uploads folder fails in one sentence and publishes nothing;
one whose folders are swapped under it reads nothing from outside the uploads root."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backup.repo.repository import Repository
from guard.demo.world import build_world, drop_world
from tests.acceptance.cli import GUARD, ROOT, guard

pytestmark = pytest.mark.acceptance

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """A small demo world under a folder every user may traverse, and a backup folder nobody owns."""
    base = Path(tempfile.mkdtemp(prefix="guard-unreadable-"))
    base.chmod(0o755)
    name = f"guard_test_bkun_{uuid.uuid4().hex[:12]}"
    truth = build_world(SERVER_URL, name, base / "uploads", 40, 0.02)
    backups = base / "backups"
    backups.mkdir()
    os.chown(backups, 65534, 65534)  # nobody:nogroup
    try:
        yield {
            "DATABASE_URL": str(truth["database_url"]),
            "UPLOADS_ROOT": str(base / "uploads"),
            "BACKUP_DIR": str(backups),
        }
    finally:
        for folder, _, _ in os.walk(base):
            os.chmod(folder, 0o755)  # so the clean-up can list what a test locked
        drop_world(SERVER_URL, name, base / "uploads")
        shutil.rmtree(base, ignore_errors=True)


def published(env: dict[str, str]) -> list[str]:
    folder = Path(env["BACKUP_DIR"], "backups")
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_failed_naming(
    done: subprocess.CompletedProcess[str], env: dict[str, str], words: tuple[str, ...]
) -> None:
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot write to backup folder" not in done.stderr, done.stderr
    assert all(w in done.stderr for w in words), done.stderr
    assert published(env) == []


def as_nobody(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `guard backup` as nobody: the uploads folder is readable to all but what a test locks."""
    settings = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UPLOADS_ROOT", "BACKUP_DIR")
    }
    return subprocess.run(
        [*NOBODY, *GUARD, "backup"],
        env={**settings, **env, "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("mode", [0o444, 0o000])
def test_a_folder_the_backup_user_cannot_read_fails_the_backup(env: dict[str, str], mode: int) -> None:
    locked = Path(env["UPLOADS_ROOT"], "uploads", "ads", "locked")
    locked.mkdir()
    (locked / "held.webp").write_bytes(b"a picture nobody may read")
    locked.chmod(mode)  # 0o444: its names can be listed, its files not reached; 0o000: not even listed
    assert_failed_naming(as_nobody(env), env, ("locked", "ermission denied"))


def test_a_file_the_backup_user_cannot_read_fails_the_backup(env: dict[str, str]) -> None:
    held = Path(env["UPLOADS_ROOT"], "uploads", "ads", "held.webp")
    held.write_bytes(b"a picture nobody may read")
    held.chmod(0o000)
    assert_failed_naming(as_nobody(env), env, ("held.webp", "ermission denied"))


def test_too_many_open_files_at_a_listed_folder_fails_the_backup(env: dict[str, str]) -> None:
    sub = Path(env["UPLOADS_ROOT"], "uploads", "ads", "sub")
    sub.mkdir()
    (sub / "orphan.webp").write_bytes(b"a picture no row needs, still in the backup's scope")
    done = guard("backup", env={**env, "GUARD_BACKUP_FAULT": "nofile:folder"})
    assert_failed_naming(done, env, ("Too many open files",))


@pytest.mark.parametrize("kind", ["absent", "symlink"])
def test_a_scan_folder_that_is_absent_or_a_symlink_fails_the_backup(env: dict[str, str], kind: str) -> None:
    if kind == "symlink":
        elsewhere = Path(env["UPLOADS_ROOT"], "elsewhere")
        elsewhere.mkdir()
        (elsewhere / "pic.webp").write_bytes(b"a picture behind a symlink")
        Path(env["UPLOADS_ROOT"], "uploads", "linked").symlink_to(elsewhere)
    done = guard(
        "backup", env={**env, "SCAN_DIRS": f"uploads/ads,uploads/{'linked' if kind == 'symlink' else 'gone'}"}
    )
    assert_failed_naming(done, env, ("scanned folder",))


def test_a_middle_folder_swapped_for_a_symlink_mid_backup_copies_nothing_from_outside(
    env: dict[str, str],
) -> None:
    ads = Path(env["UPLOADS_ROOT"], "uploads", "ads")
    (ads / "sub").mkdir()
    (ads / "sub" / "pic.webp").write_bytes(b"the picture inside the root")
    outside = Path(env["UPLOADS_ROOT"]).parent / "outside"
    (outside / "sub").mkdir(parents=True)
    secret = b"a secret outside the uploads root"
    (outside / "sub" / "pic.webp").write_bytes(secret)
    done = guard("backup", env={**env, "GUARD_BACKUP_FAULT": f"swap:copy:{ads}:{outside}"})
    assert ads.is_symlink(), done.stderr  # swapped while the backup copied the folder's first file
    assert done.returncode in (0, 1), done.stderr
    repo = Repository.open(Path(env["BACKUP_DIR"]), create=False)
    sha = hashlib.sha256(secret).hexdigest()
    assert sha not in repo.store.index and not repo.store.path(sha).exists()
