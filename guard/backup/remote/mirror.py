"""A remote copy of the repository, read: its backups, their manifests and content, and fetching.

A backup counts on a remote only with its manifest there (sent last); it is complete when its
manifest reads and every file its content list names is on the remote at its size.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from guard.backup.remote.layout import Content, content_path, manifest_path
from guard.backup.remote.rclone import Entry, Rclone
from guard.backup.repo import permissions
from guard.backup.repo.manifest import Manifest, ManifestError, parse
from guard.backup.repo.repository import BACKUP_ID, Repository
from guard.errors import GuardError, UnreachableError
from guard.plural import plural
from guard.progress import ProgressFactory, no_progress


@dataclass(frozen=True)
class RemoteBackup:
    """One backup on a remote: its manifest (or why it cannot be read), its content, what is wrong."""

    backup_id: str
    manifest: Manifest | None
    content: Content | None
    problems: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.manifest is not None and self.content is not None and not self.problems


class Mirror:
    """The repository on one rclone remote, listed once."""

    def __init__(self, remote: str) -> None:
        self.rclone = Rclone(remote)
        self.label = self.rclone.label
        self.files: dict[str, Entry] = self.rclone.listing()

    def ids(self) -> list[str]:
        """The backups whose manifest is on the remote, oldest first."""
        return sorted(i for i in self._folders() if manifest_path(i) in self.files)

    def incomplete(self) -> list[str]:
        """Backups a copy started (their content list is there) but never finished (no manifest)."""
        return sorted(i for i in self._folders() if manifest_path(i) not in self.files)

    def _folders(self) -> set[str]:
        return {
            parts[1]
            for parts in (p.split("/") for p in self.files)
            if len(parts) == 3 and parts[0] == "backups" and BACKUP_ID.fullmatch(parts[1])
        }

    def backups(self, ids: list[str] | None = None) -> list[RemoteBackup]:
        """Read each backup's manifest and content list (fetched in one call) and check its files."""
        chosen = self.ids() if ids is None else ids
        with private_folder("guard-remote-") as folder:
            wanted = [p for i in chosen for p in (manifest_path(i), content_path(i)) if p in self.files]
            self.rclone.fetch(wanted, folder)
            return [self._judge(folder, i) for i in chosen]

    def _judge(self, folder: Path, backup_id: str) -> RemoteBackup:
        problems: list[str] = []
        manifest = content = None
        try:
            manifest = parse(_read(folder / manifest_path(backup_id)), f"backup {backup_id} on {self.label}")
        except (ManifestError, FileNotFoundError) as exc:
            problems.append(str(exc) if isinstance(exc, ManifestError) else "its manifest is not there")
        try:
            content = Content.parse(_read(folder / content_path(backup_id)), backup_id)
        except FileNotFoundError:
            problems.append(f"backup {backup_id}: its content list is not on the remote")
        except GuardError as exc:
            problems.append(str(exc))
        if content is not None:
            problems += self._absent(content)
        return RemoteBackup(backup_id, manifest, content, tuple(problems))

    def _absent(self, content: Content) -> list[str]:
        out = []
        for path, size in sorted(content.files.items()):
            entry = self.files.get(path)
            if entry is None:
                out.append(f"{path} is missing on the remote")
            elif entry.size != size:
                out.append(f"{path} is {plural(entry.size, 'byte')} on the remote, expected {size:,}")
        return out

    def fetch_into(
        self, repo: Repository, backup: RemoteBackup, progress: ProgressFactory = no_progress
    ) -> int:
        """Fetch what one backup needs into a local repository (a file there at its size is kept).

        The manifest goes last, as on the remote. Returns how many bytes were fetched.
        """
        if backup.content is None or backup.manifest is None:
            raise UnreachableError(f"backup {backup.backup_id} on {self.label} is not complete: not fetched")
        lacking = [p for p, size in sorted(backup.content.files.items()) if _size(repo.root / p) != size]
        total = sum(backup.content.files[p] for p in lacking)
        bar = progress("fetch", total)
        try:
            self.rclone.fetch(lacking, repo.root, bar)
        finally:
            bar.close()
        self.rclone.fetch([content_path(backup.backup_id), manifest_path(backup.backup_id)], repo.root)
        make_private(repo.root)
        repo.store.reload()
        return total


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def make_private(root: Path) -> None:
    """Make what rclone wrote under a repository readable by its owner only (folders 0700, files 0400).

    Only the folders rclone writes to: restores/ holds restored uploads, made as the live folder is.
    """
    for top in ("packs", "objects", "backups"):
        for folder, _dirs, files in os.walk(root / top):
            os.chmod(folder, permissions.FOLDER)
            for name in files:
                path = os.path.join(folder, name)
                if not os.path.islink(path):
                    os.chmod(path, permissions.FROZEN)


@contextmanager
def private_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder only its owner can enter, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # mkdtemp makes it 0700
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cache_folder(cache_root: Path | None, remote_label: str) -> Path:
    """The local cache for one remote: under BACKUP_CACHE_DIR (default ~/.cache/guard/remotes), 0700."""
    root = (
        cache_root or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "guard" / "remotes"
    )
    if not root.exists():  # a folder guard makes is its owner's only; the operator's own keeps its mode
        root.mkdir(parents=True, mode=permissions.FOLDER)
        os.chmod(root, permissions.FOLDER)
    folder = root / hashlib.sha256(remote_label.encode()).hexdigest()[:16]
    permissions.make_folder(folder, exist_ok=True)
    os.chmod(folder, permissions.FOLDER)
    return folder
