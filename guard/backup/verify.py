"""Check that a backup is whole: its manifest, its dump, and every object it names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guard.backup import pgtools, restoreplan
from guard.backup.repo import dumps, permissions
from guard.backup.repo.manifest import Manifest, ManifestError, stat_digest_matches
from guard.backup.repo.objects import ObjectStore, hash_file
from guard.backup.repo.repository import Repository
from guard.errors import GuardError
from guard.fs.paths import printable
from guard.plural import plural
from guard.progress import ProgressFactory, no_progress

EXAMPLES = 20


@dataclass(frozen=True)
class VerifyResult:
    """One backup's verdict: how many problems, up to EXAMPLES of them, and what was looked at."""

    backup_id: str
    problems: int
    examples: tuple[str, ...]
    objects: int
    read_data: bool

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.backup_id,
            "ok": self.ok,
            "problems": self.problems,
            "examples": list(self.examples),
            "objects": self.objects,
            "read_data": self.read_data,
        }


class _Problems:
    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)

    def explain(self, causes: list[str]) -> None:
        """Put problems that explain the others first."""
        self.count += len(causes)
        self.examples = [*causes, *self.examples][:EXAMPLES]


def verify_backup(
    repo: Repository,
    backup_id: str,
    *,
    read_data: bool,
    progress: ProgressFactory = no_progress,
    read: dict[str, str | None] | None = None,
    whole_dump: bool = True,
) -> VerifyResult:
    """Check the manifest's checksum, the dump (hash and `pg_restore --list`) and every object.

    read: objects already re-hashed in this run and their verdicts (verify_all shares it, so an
    object many backups hold is read once). whole_dump False: of a chunked dump, check only that
    its chunks are there at their sizes (a restore puts it together, checking every hash, anyway).
    """
    problems = _Problems()
    try:
        manifest = repo.load(backup_id)
    except GuardError as exc:
        problems.add(str(exc))
        return VerifyResult(backup_id, problems.count, tuple(problems.examples), 0, read_data)
    if whole_dump or not manifest.dump.chunks:
        _check_dump(repo, manifest, problems)
    else:
        for problem in dumps.chunk_problems(repo.store, manifest.dump, read_data=False):
            problems.add(problem)
    objects = _check_objects(
        repo.store, manifest, read_data, problems, progress, {} if read is None else read
    )
    if problems.count:  # a damaged pack index explains what this backup lacks: say so first
        problems.explain(repo.store.damage_found())
    return VerifyResult(backup_id, problems.count, tuple(problems.examples), objects, read_data)


def _check_dump(repo: Repository, manifest: Manifest, problems: _Problems) -> None:
    """Check the dump whole: its chunks put together and hashed (formats 1-3: its file), then listed."""
    if not manifest.dump.chunks:
        _check_dump_file(repo, manifest, problems)
        return
    try:
        with dumps.assembled(repo, manifest) as dump:
            pgtools.list_archive(dump)
    except dumps.DumpDamage as exc:
        problems.add(str(exc))
    except GuardError as exc:
        problems.add(f"database dump is not a readable archive: {exc}")


def _check_dump_file(repo: Repository, manifest: Manifest, problems: _Problems) -> None:
    dump = repo.dump_path(manifest.id)
    try:
        size = dump.stat().st_size
    except FileNotFoundError:
        problems.add("database dump is missing")
        return
    if size != manifest.dump.size:
        problems.add(f"database dump is {plural(size, 'byte')}, expected {manifest.dump.size:,}")
    elif hash_file(dump) != manifest.dump.sha256:
        problems.add("database dump does not match its SHA-256")
    try:
        pgtools.list_archive(dump)
    except GuardError as exc:
        problems.add(f"database dump is not a readable archive: {exc}")


def _check_objects(
    store: ObjectStore,
    manifest: Manifest,
    read_data: bool,
    problems: _Problems,
    progress: ProgressFactory,
    read: dict[str, str | None],
) -> int:
    """Check every folder list (always re-hashed: it is read to learn its files) and every file object."""
    distinct: dict[str, tuple[int, str]] = {f.sha256: (f.size, f.path) for f in manifest.inline_files}
    lists = 0
    for folder in manifest.folders:
        for page in folder.pages:
            lists += 1
            try:
                rows = manifest.page_list(folder, page)
            except ManifestError as exc:
                problems.add(str(exc))
                continue
            if read_data and page.stat_digest is not None:
                listing = [(r[0], r[2], r[3], r[4], r[5]) for r in rows]
                if not stat_digest_matches(listing, page.stat_digest):
                    problems.add(f"folder list {page.sha256} ({printable(folder.path)}): stat digest differs")
            for r in rows:
                if r[1] not in distinct:
                    distinct[r[1]] = (r[2], f"{folder.path}/{r[0]}")
    bar = progress("objects", len(distinct))
    if read_data:
        _read_packed(store, distinct, read, bar)
    for sha, (size, path) in distinct.items():
        if sha in read:
            wrong = read[sha]
        else:
            bar.advance()
            wrong = store.check(sha, size, read_data=read_data)
        if wrong is not None:
            problems.add(f"object {sha} ({printable(path)}): {wrong}")
    bar.close()
    return len(distinct) + lists


def _read_packed(
    store: ObjectStore, distinct: dict[str, tuple[int, str]], read: dict[str, str | None], bar: Any
) -> None:
    """Re-hash the packed objects not read yet, pack by pack (each pack's span in one read), noting
    each verdict in read. A pack gone meanwhile (a prune) leaves its objects to the one-by-one check."""
    index = store.index
    wanted = []
    for sha, (size, _) in distinct.items():
        where = index.get(sha)
        if sha in read or where is None:
            continue
        if where.size != size:
            read[sha] = f"size {where.size}, expected {size}"
            bar.advance()
        else:
            wanted.append(sha)
    spans, _ = restoreplan.spans_of(store, wanted)
    try:
        for objects in restoreplan.fetch(spans):
            for sha, data in objects:
                if data is None:
                    store.note_damaged(sha)
                read[sha] = None if data is not None else "content does not match its hash"
            bar.advance(len(objects))
    except FileNotFoundError:
        return


def exposure(repo: Repository) -> str | None:
    """Say, in one line, that others than the owner may read the repository; None when it is private."""
    exposed = permissions.exposed(repo.root)
    if not exposed:
        return None
    more = f" and {len(exposed) - 3} more" if len(exposed) > 3 else ""
    return (
        f"backup repository {repo.root} is readable by other users: {', '.join(exposed[:3])}{more}; "
        f"the dump holds every row (chmod -R go= {repo.root})"
    )


def verify_all(
    repo: Repository, *, read_data: bool, progress: ProgressFactory = no_progress
) -> list[VerifyResult]:
    """Verify every published backup, oldest first; with read_data each object is read once."""
    read: dict[str, str | None] = {}
    return [verify_backup(repo, i, read_data=read_data, progress=progress, read=read) for i in repo.ids()]
