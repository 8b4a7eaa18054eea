"""Off-site copies through the real rclone: a local folder, OpenSSH's sftp on 127.0.0.1, a crypt remote.

Each case runs the real `guard` command against a small demo world of its own.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import World, drop_database, make_world, table_checksums
from offsite_support import Remotes, remotes

from guard.backup.repo.repository import MARKER, OLD_MARKER, Repository
from tests.acceptance.cli import read_pty

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_VARS = {"GUARD_CONFIG", "DATABASE_URL", "UPLOADS_ROOT", "SCAN_DIRS", "BACKUP_DIR", "BACKUP_REMOTES"}
BIG = 1_500_000  # above the store's SMALL: each such upload is a loose object, sent as a file of its own


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remotes]:
    with remotes(tmp_path_factory.mktemp("offsite") / "r") as found:
        yield found


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, ads=30, bad_rate=0.0)


def env_of(world: World, remote: Remotes, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS and not k.startswith("RCLONE_")}
    return {
        **base,
        **remote.env(),
        "DATABASE_URL": world.url,
        "UPLOADS_ROOT": str(world.root),
        "BACKUP_DIR": str(world.settings.backup_dir),
        "BACKUP_CACHE_DIR": str(tmp_path / "cache"),
    }


def guard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guard", *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def guard_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = guard(env, *args, "--json")
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"exit {done.returncode}: {done.stdout!r} {done.stderr!r}") from None


def backup(env: dict[str, str]) -> str:
    code, document = guard_json(env, "backup")
    assert code == 0, document
    return str(document["id"])


def restored_matches(
    env: dict[str, str], world: World, backup_id: str, remote_path: str, *, no_backup_dir: bool = False
) -> None:
    """Restore from the remote into scratch: the same rows and byte-identical files as the live pair."""
    before = table_checksums(world.url)
    entries = Repository(Path(env["BACKUP_DIR"])).load(backup_id).files
    files = {e.path: (world.root / e.path).read_bytes() for e in entries}
    assert len(files) > 30
    # no_backup_dir: the restore runs as on a new machine, with nothing but the remote
    restore_env = {k: v for k, v in env.items() if not (no_backup_dir and k == "BACKUP_DIR")}
    code, document = guard_json(restore_env, "restore", backup_id, "--from", remote_path)
    restore = document.get("restore", {})
    try:
        assert code in (0, 1), document
        target = psycopg.conninfo.make_conninfo(world.url, dbname=restore["target_db"])
        assert table_checksums(target) == before
        restored = Path(restore["uploads_dir"])
        assert {p: (restored / p).read_bytes() for p in files} == files
    finally:
        if restore.get("target_db"):
            drop_database(restore["target_db"])


def remote_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_copy_then_restore_from_sftp_gives_the_same_rows_and_files(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    (world.root / "uploads" / "ads" / "big.bin").write_bytes(os.urandom(BIG))
    backup_id = backup(env)
    code, copied = guard_json(env, "backup", "copy", "--to", remote.sftp)
    assert code == 0, copied
    assert copied["copied"] == [backup_id] and copied["hash_checked"] > 0  # sftp offers md5 over ssh
    code, again = guard_json(env, "backup", "copy", "--to", remote.sftp)
    assert code == 0 and again["sent_files"] == [] and again["already_there"] == [backup_id]
    code, listed = guard_json(env, "backup", "list", "--remote", remote.sftp)
    assert code == 0 and [b["id"] for b in listed["backups"] if b["complete"]] == [backup_id]
    restored_matches(env, world, backup_id, remote.sftp)
    cache = tmp_path / "cache"
    assert cache.stat().st_mode & 0o777 == 0o700 and cache.stat().st_uid == os.geteuid()  # guard made it
    (fetched,) = cache.iterdir()
    assert fetched.stat().st_mode & 0o777 == 0o700  # one remote, one cache repository
    exposed = [p for p in fetched.rglob("*") if "restores" not in p.parts and p.lstat().st_mode & 0o077]
    assert exposed == []


def test_a_crypt_remote_holds_no_plaintext_and_restores_the_same(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    canary = f"guard-offsite-canary-{uuid.uuid4().hex}".encode()
    (world.root / "uploads" / "ads" / "canary.txt").write_bytes(canary * 3)
    backup_id = backup(env)
    code, copied = guard_json(env, "backup", "copy", "--to", remote.crypt)
    assert code == 0 and copied["copied"] == [backup_id], copied
    stored = [p for p in remote.crypt_root.rglob("*") if p.is_file()]
    assert stored
    for path in stored:
        data = path.read_bytes()
        assert canary not in data and b"guard-backup" not in data and b"checksum" not in data, path
        assert "packs" not in str(path) and "backups" not in str(path) and "manifest" not in str(path)
    restored_matches(env, world, backup_id, remote.crypt, no_backup_dir=True)


def test_a_copy_killed_mid_way_never_looks_complete_and_resuming_sends_only_the_rest(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    for i in range(4):
        (world.root / "uploads" / "ads" / f"big-{i}.bin").write_bytes(os.urandom(BIG))
    backup_id = backup(env)
    target = remote.local_root.parent / f"killed-{uuid.uuid4().hex[:6]}"
    repo = Repository(Path(env["BACKUP_DIR"]))
    local = {p: (repo.root / p).stat().st_size for p in _loose(repo)}
    # A slow remote: rclone's own bandwidth limit, one transfer at a time.
    slow = {**env, "RCLONE_BWLIMIT": "1M", "RCLONE_TRANSFERS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "guard", "backup", "copy", "--to", str(target), "--json"],
        env=slow,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    done_before: set[str] = set()
    deadline = time.monotonic() + 120
    while not done_before and time.monotonic() < deadline and process.poll() is None:
        there = remote_files(target) if target.exists() else {}
        done_before = {p for p, size in local.items() if there.get(p) == size}
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert done_before, "no object arrived before the deadline"
    assert not [p for p in remote_files(target) if p.endswith("manifest.json")]
    code, listed = guard_json(env, "backup", "list", "--remote", str(target))
    assert code == 0 and listed["backups"] == [] and listed["unfinished"] == [backup_id]
    code, resumed = guard_json(env, "backup", "copy", "--to", str(target))
    assert code == 0 and resumed["copied"] == [backup_id], resumed
    assert resumed["sent_files"] and not done_before & set(resumed["sent_files"])
    # What the killed copy sent is hash-checked too, not trusted by its size (a local folder offers md5).
    assert resumed["hash_checked"] >= len(resumed["sent_files"]) + len(done_before)
    code, listed = guard_json(env, "backup", "list", "--remote", str(target))
    assert code == 0 and [b["id"] for b in listed["backups"] if b["complete"]] == [backup_id]
    code, verified = guard_json(env, "backup", "verify", "--remote", str(target), "--read-data")
    assert code == 0, verified


def _loose(repo: Repository) -> list[str]:
    return [str(p.relative_to(repo.root)) for p in repo.objects.rglob("*") if p.is_file()]


def test_a_remote_that_refuses_writes_is_one_line_exit_3_and_nothing_marked_copied(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    backup(env)
    done = guard(env, "backup", "copy", "--to", remote.readonly)
    assert done.returncode == 3, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sftpro:" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not [p for p in remote.readonly_root.rglob("*") if p.name == "manifest.json"]
    code, listed = guard_json(env, "backup", "list", "--remote", remote.readonly)
    assert code == 0 and listed["backups"] == []


def test_verify_read_data_catches_a_corrupted_object_on_the_remote(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    backup(env)
    target = remote.local_root.parent / f"corrupt-{uuid.uuid4().hex[:6]}"
    assert guard(env, "backup", "copy", "--to", str(target)).returncode == 0
    pack = next(target.glob("packs/*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    code, quick = guard_json(env, "backup", "verify", "--remote", str(target))
    assert code == 0, quick  # sizes alone cannot see it
    code, deep = guard_json(env, "backup", "verify", "--remote", str(target), "--read-data")
    assert code == 1, deep
    assert any("does not match its hash" in e for b in deep["backups"] for e in b["examples"]), deep


def test_prune_remote_keeps_what_the_remaining_manifests_need(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    target = remote.local_root.parent / f"prune-{uuid.uuid4().hex[:6]}"
    gone = world.root / "uploads" / "ads" / "only-in-the-first.bin"
    gone.write_bytes(os.urandom(BIG))
    ids = [backup(env)]
    gone.unlink()
    for i in range(2):
        (world.root / "uploads" / "ads" / f"later-{i}.bin").write_bytes(os.urandom(BIG))
        ids.append(backup(env))
    assert guard(env, "backup", "copy", "--to", str(target)).returncode == 0
    keep = ("--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0")
    tree = {p: p.read_bytes() for p in sorted(target.rglob("*")) if p.is_file()}
    code, dry = guard_json(env, "backup", "prune", "--remote", str(target), "--dry-run", *keep)
    assert code == 0 and dry["dry_run"] and dry["removed"] == ids[:2], dry
    assert {p: p.read_bytes() for p in sorted(target.rglob("*")) if p.is_file()} == tree  # nothing removed
    code, pruned = guard_json(
        env,
        "backup",
        "prune",
        "--remote",
        str(target),
        "--keep-daily",
        "1",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    )
    assert code == 0, pruned
    assert pruned["removed"] == ids[:2] and list(pruned["kept"]) == [ids[2]]
    assert pruned["files_deleted"] >= 1  # the object only the first backup had
    assert dry["removed"] == pruned["removed"] and dry["files_deleted"] == pruned["files_deleted"]
    assert not (target / "backups" / ids[0]).exists()
    code, deep = guard_json(env, "backup", "verify", "--remote", str(target), "--read-data")
    assert code == 0 and [b["id"] for b in deep["backups"]] == [ids[2]], deep
    restored_matches(env, world, ids[2], str(target))


def test_a_copy_refuses_a_non_empty_folder_that_is_not_a_guard_repository(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    backup(env)
    target = tmp_path / "someone-elses"
    target.mkdir()
    (target / "photo.jpg").write_bytes(b"not ours")
    done = guard(env, "backup", "copy", "--to", str(target))
    assert done.returncode == 2 and "not a guard backup repository" in done.stderr, done.stderr
    assert [p.name for p in target.iterdir()] == ["photo.jpg"]


def test_a_file_the_remote_lost_is_found_by_verify_and_sent_again_by_the_next_copy(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    env = env_of(world, remote, tmp_path)
    (world.root / "uploads" / "ads" / "big.bin").write_bytes(os.urandom(BIG))
    backup_id = backup(env)
    target = remote.local_root.parent / f"lost-{uuid.uuid4().hex[:6]}"
    assert guard(env, "backup", "copy", "--to", str(target)).returncode == 0
    (lost,) = [p for p in target.glob("objects/*/*")]
    lost.unlink()
    code, quick = guard_json(env, "backup", "verify", "--remote", str(target))
    assert code == 1 and "missing on the remote" in quick["backups"][0]["examples"][0], quick
    code, again = guard_json(env, "backup", "copy", "--to", str(target))
    assert code == 0 and again["copied"] == [backup_id], again
    assert again["sent_files"] == [str(lost.relative_to(target))]
    code, deep = guard_json(env, "backup", "verify", "--remote", str(target), "--read-data")
    assert code == 0, deep


def test_copy_draws_a_progress_bar_on_a_terminal(world: World, remote: Remotes, tmp_path: Path) -> None:
    env = env_of(world, remote, tmp_path)
    (world.root / "uploads" / "ads" / "big.bin").write_bytes(os.urandom(BIG))
    backup(env)
    leader, follower = pty.openpty()
    target = remote.local_root.parent / f"bar-{uuid.uuid4().hex[:6]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "guard", "backup", "copy", "--to", str(target)],
        env={**env, "RCLONE_BWLIMIT": "1M"},  # slow enough for rclone to report progress
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    drawn = read_pty(leader)
    out = process.communicate(timeout=120)[0]
    os.close(leader)
    assert process.returncode == 0 and b"copied 1 backup" in out, out
    bars = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", drawn).decode(errors="replace")
    assert "copy" in bars and re.search(r"\d+/\d+", bars), bars


def test_a_repository_still_on_format_1_copies_and_its_upgrade_copies_over_it(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    # A repository an earlier version wrote (its marker guard-backup.json, nothing written since the
    # upgrade) is copied as it is; after the next backup upgrades it, the copy to the same remote goes on.
    env = env_of(world, remote, tmp_path)
    first = backup(env)
    root = Path(env["BACKUP_DIR"])
    (root / MARKER).unlink()
    (root / OLD_MARKER).write_text('{"format": "guard-backup/1"}\n')
    target = remote.local_root.parent / f"format1-{uuid.uuid4().hex[:6]}"
    done = guard(env, "backup", "copy", "--to", str(target))
    assert done.returncode == 0, done.stderr
    assert (target / OLD_MARKER).exists() and not (target / MARKER).exists()
    second = backup(env)  # upgrades the local repository to format 2
    assert (root / MARKER).exists() and not (root / OLD_MARKER).exists()
    done = guard(env, "backup", "copy", "--to", str(target))
    assert done.returncode == 0, done.stderr
    assert (target / MARKER).exists()
    restored_matches(env, world, second, str(target))
    assert first != second


def test_a_file_a_killed_copy_left_at_its_size_with_other_bytes_is_sent_again(
    world: World, remote: Remotes, tmp_path: Path
) -> None:
    # What a killed copy can leave: a pack at its full size with torn bytes, and no manifest. The next
    # copy chooses what to send by size, so only the hash check sees it; it sends that file again.
    env = env_of(world, remote, tmp_path)
    backup_id = backup(env)
    target = remote.local_root.parent / f"torn-{uuid.uuid4().hex[:6]}"
    assert guard(env, "backup", "copy", "--to", str(target)).returncode == 0
    (target / "backups" / backup_id / "manifest.json").unlink()  # the copy never finished
    pack = next(target.glob("packs/*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    code, again = guard_json(env, "backup", "copy", "--to", str(target))
    assert code == 0 and again["copied"] == [backup_id], again
    code, deep = guard_json(env, "backup", "verify", "--remote", str(target), "--read-data")
    assert code == 0, deep
