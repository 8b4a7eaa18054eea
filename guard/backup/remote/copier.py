"""`guard backup copy`: send backups to an rclone remote, content first and each manifest last.

The remote is listed once and only what it lacks (or holds at another size: a killed transfer) is
sent. Before a backup's manifest goes, the remote is listed again: every file the backup needs must
be there at its size, and each file sent now must match its hashes wherever the remote offers one.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.backup.remote import locks
from guard.backup.remote.layout import Content, content_of, content_path, manifest_path, marked
from guard.backup.remote.rclone import Entry, Rclone, RemoteError
from guard.backup.repo import permissions
from guard.backup.repo.repository import (
    BACKUP_ID,
    LOCK_WAIT_S,
    MANIFEST,
    MARKER,
    OLD_MARKER,
    Repository,
    check_backup_id,
)
from guard.errors import GuardError, UsageError
from guard.plural import plural
from guard.progress import ProgressFactory, no_progress

HASHES = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}


@dataclass(frozen=True)
class CopyResult:
    """What one copy sent to one remote: the backups it completed, those already there, the files."""

    remote: str
    copied: list[str]
    already: list[str]
    sent_files: list[str]
    sent_bytes: int
    hashed: int  # files sent whose remote hash was compared with the local one
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "copied": self.copied,
            "already_there": self.already,
            "sent_files": self.sent_files,
            "sent_bytes": self.sent_bytes,
            "hash_checked": self.hashed,
            "notes": self.notes,
        }


def copy_backups(
    repo: Repository,
    remote: str,
    ids: list[str] | None = None,
    progress: ProgressFactory = no_progress,
    *,
    wait_s: float = locks.WAIT_S,
) -> CopyResult:
    """Copy these backups (default: every published one) to the remote; RemoteError if it fails.

    The remote's copy lock is held from before its listing until the manifests are confirmed: a
    prune of the remote waits meanwhile (locks.py), and this copy waits up to `wait_s` for one.
    """
    rclone = Rclone(remote)
    with repo.lock(exclusive=False, wait_s=LOCK_WAIT_S):  # a prune may not repack what is being sent
        chosen = [check_backup_id(i) for i in ids] if ids else repo.ids()
        local = set(repo.ids())
        for backup_id in chosen:
            if backup_id not in local:
                raise UsageError(f"backup {backup_id} not found in {repo.root}")
        _ours_or_empty(rclone)  # before the lock file: someone else's folder gets nothing written
        with locks.holding(rclone, locks.COPY, wait_s=wait_s) as held:
            there = rclone.listing()
            complete = _complete(rclone, there)
            already, todo = _split(repo, chosen, there, complete)
            contents = [content_of(repo, repo.load(i)) for i in todo]
            confirmed = {p for c in complete.values() for p in c.files}
            return _send(repo, rclone, there, already, contents, confirmed, progress, held)


def _ours_or_empty(rclone: Rclone) -> None:
    """Refuse a remote folder that holds a file and no guard repository marker (a format 1 copy is
    ours too; so are a killed copy's lock files, which go before the marker)."""
    top = rclone.top()
    if marked(top):
        return
    for name, folder in top:
        files = list(rclone.listing(under=name)) if folder else [name]
        if name == locks.LOCKS and folder:
            files = [p for p in files if not locks.LOCK_FILE.fullmatch(p)]
        if files:
            raise UsageError(f"{rclone.label} is not empty and not a guard backup repository: not copied to")


def _split(
    repo: Repository, chosen: list[str], there: dict[str, Entry], complete: dict[str, Content]
) -> tuple[list[str], list[str]]:
    """Backups complete on the remote (the same manifest, all their content there) are done.

    The rest are copied: new ones, and any whose content the remote lost since (sent again).
    """
    done: list[str] = []
    todo: list[str] = []
    for backup_id in chosen:
        local = (repo.root / manifest_path(backup_id)).stat().st_size
        entry = there.get(manifest_path(backup_id))
        whole = entry is not None and entry.size == local and backup_id in complete
        (done if whole else todo).append(backup_id)
    return done, todo


def _send(
    repo: Repository,
    rclone: Rclone,
    there: dict[str, Entry],
    already: list[str],
    contents: list[Content],
    confirmed: set[str],
    progress: ProgressFactory,
    held: locks.Held,
) -> CopyResult:
    # The local repository's marker under its own name: format 1 (not written since the upgrade) keeps
    # the old name; once upgraded, the new marker goes to the remote too.
    marker = MARKER if (repo.root / MARKER).exists() else OLD_MARKER
    marker_bytes = (repo.root / marker).read_bytes()
    needed: dict[str, int] = {marker: len(marker_bytes)}
    for content in contents:
        needed.update(content.files)
    missing = sorted(
        p for p, size in needed.items() if p != marker and (p not in there or there[p].size != size)
    )
    # Files on the remote that no complete backup there vouches for (what a killed copy sent) are
    # hash-checked like the ones sent now.
    unconfirmed = sorted(set(needed) - confirmed)
    with tempfile.TemporaryDirectory(prefix="guard-copy-") as staging:
        lists = _stage_lists(Path(staging), contents)
        stale = marker not in there or there[marker].size != len(marker_bytes)
        if stale or _remote_bytes(rclone, marker) != marker_bytes:  # format 2's is format 3's size
            permissions.write_file(Path(staging) / marker, marker_bytes)
            lists.insert(0, marker)
        # first: a prune of the remote keeps what they name; force: a marker of the same size
        rclone.send(Path(staging), lists, force=not stale)
        bar = progress("copy", sum(needed[p] for p in missing))
        try:
            rclone.send(repo.root, missing, bar)
        finally:
            bar.close()
    hashed = _verify(repo, rclone, needed, there, sorted(set(unconfirmed) | set(missing)))
    if contents:
        held.confirm()  # the listing's word on what was already there holds only while no prune ran
    rclone.send(repo.root, [manifest_path(c.backup_id) for c in contents])
    copied = [c.backup_id for c in contents]
    _confirm(rclone, repo, copied)
    return CopyResult(rclone.label, copied, already, missing, sum(needed[p] for p in missing), hashed)


def _complete(rclone: Rclone, there: dict[str, Entry]) -> dict[str, Content]:
    """The content lists of the remote's complete backups: a manifest there, every file at its size.

    Their files were verified when they were sent; any other file there (what a killed copy sent) is
    hash-checked like the ones sent now.
    """
    ids = [p.split("/")[1] for p in there if p.startswith("backups/") and p.endswith(f"/{MANIFEST}")]
    lists = [content_path(i) for i in ids if BACKUP_ID.fullmatch(i) and content_path(i) in there]
    if not lists:
        return {}
    complete: dict[str, Content] = {}
    with tempfile.TemporaryDirectory(prefix="guard-copy-") as folder:
        rclone.fetch(lists, Path(folder))
        for path in lists:
            backup_id = path.split("/")[1]
            try:
                content = Content.parse((Path(folder) / path).read_bytes(), backup_id)
            except (GuardError, OSError):
                continue
            if all(p in there and there[p].size == size for p, size in content.files.items()):
                complete[backup_id] = content
    return complete


def _stage_lists(staging: Path, contents: list[Content]) -> list[str]:
    """Write each backup's content list under a private staging folder, as it goes on the remote."""
    paths = []
    for content in contents:
        path = content_path(content.backup_id)
        target = staging / path
        for folder in (target.parent.parent, target.parent):
            permissions.make_folder(folder, exist_ok=True)
        permissions.write_file(target, content.to_bytes())
        paths.append(path)
    return paths


def _remote_bytes(rclone: Rclone, path: str) -> bytes | None:
    """A small file's bytes on the remote (None when they cannot be read)."""
    with tempfile.TemporaryDirectory(prefix="guard-copy-") as folder:
        try:
            rclone.fetch([path], Path(folder))
            return (Path(folder) / path).read_bytes()
        except (GuardError, OSError):
            return None


def _verify(
    repo: Repository,
    rclone: Rclone,
    needed: dict[str, int],
    there: dict[str, Entry],
    checked: list[str],
    *,
    resend: bool = True,
) -> int:
    """Check every needed file is on the remote at its size, and the unconfirmed ones against hashes.

    The files the first listing found at their size and a complete backup vouches for keep that
    listing's word; every other one (sent now, or by a copy that never finished) is listed again
    with the hashes the remote offers, and compared with the local file.
    """
    again = rclone.listing(hashes=True, only=checked) if checked else {}
    listed = {**there, **again}
    for path in checked:
        if path not in again:
            listed.pop(path, None)  # not there after all
    for path, size in sorted(needed.items()):
        entry = listed.get(path)
        if entry is None or entry.size != size:
            found = "missing" if entry is None else plural(entry.size, "byte")
            raise RemoteError(
                f"copy to {rclone.label} did not complete: {path} is {found} there, "
                f"expected {plural(size, 'byte')}; no backup was marked copied"
            )
    hashed, differ = 0, []
    for path, entry in sorted(again.items()):
        kinds = {k: v for k, v in entry.hashes.items() if k in HASHES and v}
        if not kinds:
            continue
        local = _hashes(repo.root / path, kinds)
        mismatch = next((kind for kind, value in kinds.items() if local[kind] != value.lower()), None)
        if mismatch is not None:
            differ.append((path, mismatch))
        hashed += 1
    if differ and resend:
        # A file at its size with other bytes (a killed copy's torn write): the size-only choice of
        # what to send never sends it again, so send it again now, whatever its time, and look once more.
        rclone.send(repo.root, [p for p, _ in differ], force=True)
        return _verify(repo, rclone, needed, there, checked, resend=False)
    if differ:
        path, kind = differ[0]
        raise RemoteError(
            f"copy to {rclone.label}: {path} differs there ({kind} mismatch); no backup was marked copied"
        )
    return hashed


def _hashes(path: Path, kinds: dict[str, str]) -> dict[str, str]:
    digests = {k: HASHES[k]() for k in kinds}
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            for digest in digests.values():
                digest.update(chunk)
    return {k: d.hexdigest() for k, d in digests.items()}


def _confirm(rclone: Rclone, repo: Repository, copied: list[str]) -> None:
    """Check each manifest just sent arrived whole."""
    if not copied:
        return
    listed = rclone.listing(only=[manifest_path(i) for i in copied])
    for backup_id in copied:
        entry = listed.get(manifest_path(backup_id))
        if entry is None or entry.size != (repo.root / manifest_path(backup_id)).stat().st_size:
            raise RemoteError(f"copy to {rclone.label}: the manifest of {backup_id} did not arrive whole")
