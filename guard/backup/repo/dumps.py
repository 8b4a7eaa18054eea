"""The database dump in the store: cut into chunks when a backup is taken, put together to be read.

A backup's `pg_dump -Fc -Z0` archive is cut into content-defined chunks (guard.backup.repo.chunker),
each an object in the store, compressed in its pack like a folder list; the manifest names them in
order. A second backup of a database that changed little shares most chunks with the first, so
its dump costs only what changed. pg_restore needs the archive as a seekable file, so a verify or
a restore writes it out whole under the repository's tmp/, each chunk checked against its hash and
the whole against the dump's, and removes it afterwards. Formats 1-3 kept the archive as a file
next to the manifest; that file is read as it is.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from guard.backup.repo import chunker, packs, permissions
from guard.backup.repo.manifest import Chunk, DumpInfo, Manifest
from guard.backup.repo.objects import CHUNK_LEVEL, ObjectStore
from guard.backup.repo.repository import Repository
from guard.errors import GuardError
from guard.fs.fdio import write_all

COMPRESSORS = 2  # as the walk runs two processes; they are done when the dump is stored


class DumpDamage(GuardError):
    """A chunk of the dump is missing or does not match its hash, or the whole does not."""


def store_dump(store: ObjectStore, path: Path) -> DumpInfo:
    """Put a finished archive into the store as chunks; return what the manifest says of it.

    New chunks are compressed by COMPRESSORS threads (zstd releases the GIL) while this one reads,
    hashes and packs them in order; at most 2 * COMPRESSORS chunks (4 MiB at most each) wait.
    """
    digest = hashlib.sha256()
    chunks: list[Chunk] = []
    waiting: deque[tuple[bytes, Future[bytes] | None]] = deque()
    with ThreadPoolExecutor(COMPRESSORS) as pool:
        for data in chunker.file_chunks(path):
            digest.update(data)
            held = store.has(hashlib.sha256(data).hexdigest(), len(data))
            waiting.append((data, None if held else pool.submit(packs.compressed, data, CHUNK_LEVEL)))
            while len(waiting) > 2 * COMPRESSORS:
                chunks.append(_add_chunk(store, *waiting.popleft()))
        while waiting:
            chunks.append(_add_chunk(store, *waiting.popleft()))
    if not chunks:  # pg_dump wrote nothing yet said it succeeded: no backup without its dump
        raise GuardError(f"pg_dump wrote an empty archive to {path}")
    return DumpInfo(path.name, sum(c.size for c in chunks), digest.hexdigest(), tuple(chunks))


def _add_chunk(store: ObjectStore, data: bytes, packed: Future[bytes] | None) -> Chunk:
    return Chunk(*store.add_chunk(data, None if packed is None else packed.result()))


def chunk_problems(store: ObjectStore, dump: DumpInfo, *, read_data: bool) -> list[str]:
    """What is wrong with the dump's chunks (missing, wrong size, wrong hash when read_data)."""
    problems = []
    for number, chunk in enumerate(dump.chunks, 1):
        wrong = store.check(chunk.sha256, chunk.size, read_data=read_data)
        if wrong is not None:
            problems.append(f"database dump chunk {number} of {len(dump.chunks)} ({chunk.sha256}): {wrong}")
    return problems


@contextmanager
def assembled(repo: Repository, manifest: Manifest) -> Iterator[Path]:
    """The backup's archive as a file for the with-block: its chunks written out (each checked, then
    the whole), or the file formats 1-3 kept next to the manifest (checked by verify, not here).

    Raises DumpDamage when a chunk is missing or any hash does not match.
    """
    dump = manifest.dump
    if not dump.chunks:
        yield repo.dump_path(manifest.id)
        return
    folder = _scratch_folder(repo)
    path = folder / f"dump-{manifest.id}-{secrets.token_hex(4)}"
    try:
        _write_out(repo.store, dump, path)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _write_out(store: ObjectStore, dump: DumpInfo, path: Path) -> None:
    whole = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, permissions.FILE)
    try:
        for number, chunk in enumerate(dump.chunks, 1):
            try:
                data = store.read(chunk.sha256)
            except FileNotFoundError:
                raise DumpDamage(
                    f"database dump chunk {number} of {len(dump.chunks)} ({chunk.sha256}) is missing"
                ) from None
            if len(data) != chunk.size or hashlib.sha256(data).hexdigest() != chunk.sha256:
                store.note_damaged(chunk.sha256)
                raise DumpDamage(
                    f"database dump chunk {number} of {len(dump.chunks)} ({chunk.sha256}): "
                    "content does not match its hash"
                )
            whole.update(data)
            write_all(fd, data)
    finally:
        os.close(fd)
    if whole.hexdigest() != dump.sha256:
        raise DumpDamage("database dump does not match its SHA-256")


def _scratch_folder(repo: Repository) -> Path:
    """The repository's tmp/ (private, cleared by the next backup after a crash), or, when it cannot
    be written (a read-only copy), the system's temp folder (the file itself is the owner's only)."""
    try:
        permissions.make_folder(repo.tmp, exist_ok=True)
        if os.access(repo.tmp, os.W_OK):
            return repo.tmp
    except OSError:
        pass
    return Path(tempfile.gettempdir())
