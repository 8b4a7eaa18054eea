"""The backup repository is its owner's alone, whatever the umask; a restored folder is the live one's."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import World, make_world

from guard.backup.restorer import discard_scratch, restore_backup

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMMUTABLE = (
    "objects/*/*",
    "packs/*.pack",
    "packs/*.idx",
    "backups/*/manifest.json",
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh 20-ad world, one upload big enough to be a loose object, and an empty backup folder."""
    for world in make_world(tmp_path, ads=20, bad_rate=0.0):
        (world.root / "uploads" / "ads" / "big.bin").write_bytes(os.urandom(1_500_000))
        yield world


def guard_with_umask(world: World, umask: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `guard` under a umask, set by the shell that execs it."""
    env = {
        **os.environ,
        "DATABASE_URL": world.url,
        "UPLOADS_ROOT": str(world.root),
        "BACKUP_DIR": str(world.settings.backup_dir),
    }
    env.pop("GUARD_CONFIG", None)
    command = f'umask {umask:03o} && exec "$0" -m guard "$@"'
    return subprocess.run(
        ["sh", "-c", command, sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def modes(folder: Path) -> dict[str, int]:
    """Every path under folder (and folder itself, as "."), with its permission bits."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_every_folder_and_file_of_the_repository_is_private_whatever_the_umask(
    world: World, umask: int
) -> None:
    for _ in range(2):  # the second backup finds the repository already there
        done = guard_with_umask(world, umask, "backup")
        assert done.returncode == 0, done.stderr
    repo = world.settings.backup_dir
    assert repo is not None
    found = modes(repo)
    immutable = {str(p.relative_to(repo)) for pattern in IMMUTABLE for p in repo.glob(pattern)}
    assert any(p.startswith("objects/") for p in immutable) and any(p.endswith(".pack") for p in immutable)
    assert not list(repo.glob("backups/*/database.dump"))  # the dump is chunks in the packs
    for path, mode in found.items():
        if (repo / path).is_dir():
            assert mode == 0o700, f"folder {path} is {mode:03o}"
        elif path in immutable:
            assert mode == 0o400, f"immutable file {path} is {mode:03o}"
        else:
            assert mode == 0o600, f"file {path} is {mode:03o}"


def test_verify_warns_about_a_repository_others_can_read(world: World) -> None:
    assert guard_with_umask(world, 0o022, "backup").returncode == 0
    drill = guard_with_umask(world, 0o022, "restore", "drill")  # leaves restores/ and drills.jsonl
    assert drill.returncode == 0, drill.stdout + drill.stderr
    quiet = guard_with_umask(world, 0o022, "backup", "verify")
    assert quiet.returncode == 0 and "readable by other users" not in quiet.stderr + quiet.stdout
    repo = world.settings.backup_dir
    assert repo is not None
    manifest = next(repo.glob("backups/*/manifest.json"))
    manifest.chmod(0o644)
    repo.chmod(0o755)
    loud = guard_with_umask(world, 0o022, "backup", "verify")
    assert loud.returncode == 0, loud.stderr  # a warning, not a finding: the backup itself is whole
    assert "readable by other users" in loud.stderr
    assert str(manifest) in loud.stderr


def test_a_restore_makes_its_uploads_folder_with_the_live_folders_owner_and_mode(world: World) -> None:
    nobody = pwd.getpwnam("nobody")
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    done = guard_with_umask(world, 0o022, "backup")
    assert done.returncode == 0, done.stderr
    os.chown(world.root, nobody.pw_uid, nobody.pw_gid)
    world.root.chmod(0o750)
    backup_id = sorted(p.name for p in (world.settings.backup_dir or Path()).glob("backups/*"))[-1]
    restored = restore_backup(world.settings, backup_id)
    try:
        top = restored.uploads_dir.stat()
        assert (top.st_uid, top.st_gid) == (nobody.pw_uid, nobody.pw_gid)
        assert stat.S_IMODE(top.st_mode) == 0o750
        for path in restored.uploads_dir.rglob("*"):
            info = path.lstat()
            assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
            if path.is_dir():
                assert stat.S_IMODE(info.st_mode) == 0o750, path
    finally:
        os.chown(world.root, 0, 0)
        discard_scratch(world.settings, restored.target_db, restored.uploads_dir)
