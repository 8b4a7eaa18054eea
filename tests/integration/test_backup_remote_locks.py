"""A copy and a prune of one remote never overlap (guard/backup/remote/locks.py), with real rclone.

The loss they prevent: a copy lists the remote, finds an object an older backup there names and so
does not send it; a prune that lists before the copy's content list arrives removes that older
backup and, with it, the object; the copy then publishes a backup that lacks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_support import World, make_world

from guard.backup.policy import Policy
from guard.backup.remote import copier, locks
from guard.backup.remote.copier import copy_backups
from guard.backup.remote.expiry import prune_remote
from guard.backup.remote.layout import Content
from guard.backup.remote.offsite import verify_remote
from guard.backup.remote.rclone import Entry, Rclone
from guard.backup.repo.repository import Repository
from guard.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
BIG = 1_500_000  # above the store's SMALL: a loose object, a file of its own on the remote
KEEP_NEWEST = Policy(daily=1, weekly=0, monthly=0)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, ads=20, bad_rate=0.0)


def backup(world: World) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")},
        "DATABASE_URL": world.url,
        "UPLOADS_ROOT": str(world.root),
        "BACKUP_DIR": str(world.settings.backup_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "guard", "backup", "--json"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def repository(world: World) -> Repository:
    assert world.settings.backup_dir is not None
    return Repository.open(world.settings.backup_dir, create=False)


@contextmanager
def copy_paused_after_its_listing(
    monkeypatch: pytest.MonkeyPatch, world: World, target: str, backup_id: str
) -> Iterator[list[BaseException]]:
    """Copy one backup in a thread, held after its listing and before its content list goes, while
    the block runs; then let it finish. Yields the copy's errors (filled once the block is over)."""
    listed, go = threading.Event(), threading.Event()
    complete = copier._complete

    def paused(rclone: Rclone, there: dict[str, Entry]) -> dict[str, Content]:
        found = complete(rclone, there)
        listed.set()
        assert go.wait(120)
        return found

    monkeypatch.setattr(copier, "_complete", paused)
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            copy_backups(repository(world), target, [backup_id])
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    copying = threading.Thread(target=copy)
    copying.start()
    try:
        assert listed.wait(120)
        yield errors
    finally:
        go.set()
        copying.join(120)
    assert not copying.is_alive()


def test_a_prune_deletes_nothing_while_a_copy_is_under_way_and_the_copy_arrives_whole(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = str(tmp_path / "remote")
    shared = world.root / "uploads" / "ads" / "shared.bin"
    body = os.urandom(BIG)
    shared.write_bytes(body)
    first = backup(world)
    shared.unlink()
    second = backup(world)
    copy_backups(repository(world), target)  # the remote: the first (alone naming the object), the second
    shared.write_bytes(body)  # back again: the third names the object the remote has for the first
    third = backup(world)

    with copy_paused_after_its_listing(monkeypatch, world, target, third) as errors:
        before = files(Path(target))
        with pytest.raises(locks.RemoteBusy) as busy:
            prune_remote(target, KEEP_NEWEST, wait_s=0)
        assert Path(target).exists() and files(Path(target)) == before  # not one file deleted
    assert not errors, errors
    message = str(busy.value)
    assert "\n" not in message and "busy: a copy (host " in message and busy.value.exit_code == 3, message

    pruned = prune_remote(target, KEEP_NEWEST, wait_s=0)  # the copy is over: now the prune goes
    assert pruned.removed == [first, second] and pruned.files_deleted >= 1, pruned
    checked = verify_remote(target, read_data=True)
    assert [(r.backup_id, r.problems) for r in checked] == [(third, 0)], checked
    assert not (Path(target) / "locks").exists() or not any((Path(target) / "locks").iterdir())


def test_a_copy_whose_lock_was_taken_away_publishes_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "remote"
    first = backup(world)
    copy_backups(repository(world), str(target), [first])
    (world.root / "uploads" / "ads" / "new.bin").write_bytes(os.urandom(BIG))
    second = backup(world)
    with copy_paused_after_its_listing(monkeypatch, world, str(target), second) as errors:
        (lock,) = locks.holders(Rclone(str(target)))
        (target / lock.path).unlink()  # what a prune does to a lock it took for a killed copy's
    assert len(errors) == 1 and "lost the lock" in str(errors[0]) and "\n" not in str(errors[0]), errors
    assert not (target / "backups" / second / "manifest.json").exists()  # not published
    assert [r.backup_id for r in verify_remote(str(target), read_data=False)] == [first]


def test_a_lock_left_unrefreshed_past_its_trust_is_lost(tmp_path: Path) -> None:
    rclone = Rclone(str(tmp_path / "remote"))
    with locks.holding(rclone, locks.COPY) as held:
        held.confirm()  # fresh and on the remote
        held.written_at -= locks.TRUSTED_S + 1  # its refreshes failed (or the host slept) that long
        with pytest.raises(locks.RemoteError, match="lost the lock .* not refreshed for"):
            held.confirm()


def test_copies_to_one_remote_may_overlap(world: World, tmp_path: Path) -> None:
    target = tmp_path / "remote"
    made = backup(world)
    with locks.holding(Rclone(str(target)), locks.COPY):
        assert copy_backups(repository(world), str(target), [made], wait_s=0).copied == [made]


def test_a_copy_gives_way_to_a_prune_and_sends_nothing(world: World, tmp_path: Path) -> None:
    target = tmp_path / "remote"
    first = backup(world)
    copy_backups(repository(world), str(target), [first])
    (world.root / "uploads" / "ads" / "new.bin").write_bytes(os.urandom(BIG))
    later = backup(world)
    with locks.holding(Rclone(str(target)), locks.PRUNE):
        before = {p: b for p, b in files(target).items() if not p.startswith("locks/")}
        with pytest.raises(locks.RemoteBusy, match=r"busy: a prune \(host .*, pid \d+\), its lock refreshed"):
            copy_backups(repository(world), str(target), [later], wait_s=0)
        after = {p: b for p, b in files(target).items() if not p.startswith("locks/")}
        assert after == before  # its lock came and went; nothing of the backup was sent
        assert len([p for p in files(target) if p.startswith("locks/")]) == 1  # the prune's own
    assert copy_backups(repository(world), str(target), [later], wait_s=0).copied == [later]


def test_a_lock_nobody_refreshed_for_half_an_hour_stops_counting_and_a_prune_removes_it(
    world: World, tmp_path: Path
) -> None:
    target = tmp_path / "remote"
    first = backup(world)
    copy_backups(repository(world), str(target), [first])
    (target / "locks").mkdir(exist_ok=True)
    hour_ago = time.time() - 3600
    dead = []  # what a prune and a copy killed an hour ago left
    for kind, letter in (("prune", "a"), ("copy", "b")):
        lock = target / "locks" / f"{kind}-{letter * 32}.json"
        lock.write_text(json.dumps({"kind": kind, "host": "gone", "pid": 1}))
        os.utime(lock, (hour_ago, hour_ago))
        dead.append(lock)
    odd = target / "locks" / "notes.txt"  # not a lock's name: never judged, never removed
    odd.write_text("kept")
    second = backup(world)
    assert copy_backups(repository(world), str(target), [second], wait_s=0).copied == [second]
    assert all(lock.exists() for lock in dead)  # a copy leaves others' locks alone
    pruned = prune_remote(str(target), KEEP_NEWEST, wait_s=0)
    assert pruned.removed == [first]
    assert not any(lock.exists() for lock in dead) and odd.read_text() == "kept"


def test_a_held_lock_is_refreshed_so_a_long_copy_keeps_it(tmp_path: Path) -> None:
    target = tmp_path / "remote"
    rclone = Rclone(str(target))
    with locks.holding(rclone, locks.COPY, refresh_s=0.2):
        (first,) = locks.holders(rclone)
        assert first.kind == locks.COPY and first.refreshed is not None
        assert not first.stale(datetime.now(UTC))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (now,) = locks.holders(rclone)
            if now.refreshed is not None and now.refreshed > first.refreshed:
                break
        else:
            raise AssertionError("the lock was not refreshed within 60 s")
        assert now.path == first.path
    assert locks.holders(rclone) == []  # released on the way out


def test_a_copy_writes_no_lock_into_a_folder_that_is_not_a_guard_repository(
    world: World, tmp_path: Path
) -> None:
    made = backup(world)
    for name, body in (("photo.jpg", b"not ours"), ("locks/notes.txt", b"not a lock")):
        target = tmp_path / f"someone-elses-{name.replace('/', '-')}"
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(body)
        with pytest.raises(UsageError, match="not a guard backup repository"):
            copy_backups(repository(world), str(target), [made])
        assert files(target) == {name: body}  # nothing written, no lock left
        pruned = prune_remote(str(target), KEEP_NEWEST, wait_s=0)  # nothing of guard's: untouched
        assert pruned.removed == [] and pruned.files_deleted == 0 and files(target) == {name: body}
        assert sorted(p.name for p in target.iterdir()) == [name.split("/")[0]]


def test_a_folder_holding_only_a_killed_copys_lock_is_copied_to(world: World, tmp_path: Path) -> None:
    target = tmp_path / "remote"
    (target / "locks").mkdir(parents=True)
    stale = target / "locks" / f"copy-{'c' * 32}.json"  # a copy killed before its marker went
    stale.write_text(json.dumps({"kind": "copy", "host": "gone", "pid": 1}))
    made = backup(world)
    assert copy_backups(repository(world), str(target), [made], wait_s=0).copied == [made]
    # (empty folders count as nothing, as before: an empty lost+found at a mount's root)
    other = tmp_path / "mount"
    (other / "lost+found").mkdir(parents=True)
    assert copy_backups(repository(world), str(other), [made], wait_s=0).copied == [made]
