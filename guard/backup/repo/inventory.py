"""What the store held when the last backup or prune finished, and what it has lost since.

A backup reuses an unchanged folder list without reading it, so it never sees the file objects the
list names. That is only sound while the store still holds everything it held when the list was
last trusted. So every successful backup and prune records the store's inventory (each pack's
and index's size and ctime, and how many loose objects there are), and the next backup compares:
a pack gone or changed (it is re-hashed), an index that fails its checksum or lost its pack, fewer
loose objects, or damage `guard backup verify --read-data` noted (damage.jsonl) makes the store
"lost", and the walk then checks every reused list's objects against the index (a dict lookup each)
and reads again from the uploads folder every file whose object is gone. Without an inventory (a
repository from before this existed) the store counts as lost once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.backup.repo import packs
from guard.fs.fdio import write_all
from guard.plural import plural

if TYPE_CHECKING:  # the store records its inventory through this module: no import cycle at run time
    from guard.backup.repo.objects import ObjectStore

INVENTORY = "inventory.json"
DAMAGE = "damage.jsonl"
HEX = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")  # a pack's name, an object's SHA-256
PackKey = list[int]  # pack size, pack ctime_ns, index size, index ctime_ns


@dataclass
class Health:
    """What the store lost since the last inventory, and the objects known damaged and dropped."""

    lost: bool = False
    notes: list[str] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    gone_packs: int = 0

    def outcome(self, store: ObjectStore) -> list[str]:
        """The notes, then what this backup stored again and what it could not."""
        if not self.lost:
            return list(self.notes)
        back = {sha for sha in self.dropped if store.present(sha)}
        out = list(self.notes)
        if self.dropped:
            out.append(
                f"{len(back)} of {plural(len(self.dropped), 'damaged object')} "
                "stored again from the uploads folder"
            )
        if len(back) < len(self.dropped) or self.gone_packs:
            out.append(
                "objects no file in the uploads folder holds any more could not be stored again: "
                "older backups that need them stay damaged (guard backup verify --read-data says which)"
            )
        return out


def heal(store: ObjectStore) -> Health:
    """Drop what the store lost or holds damaged from its index; call under the exclusive lock."""
    recorded = _read(store.root / INVENTORY)
    current = pack_keys(store.packs)
    health = Health(lost=recorded is None)
    if recorded is None and current:
        health.notes.append("no store inventory yet: every reused folder list's objects are checked")
    survey = packs.survey(store.packs)
    for note in survey.notes():
        health.notes.append(note)
        health.lost = True
    for name in survey.damaged + survey.orphaned:
        (store.packs / f"{name}.idx").unlink(missing_ok=True)
    current = pack_keys(store.packs)  # again: without the indexes just removed
    suspects, loose = _noted_damage(store.root / DAMAGE)
    suspects |= set(survey.short)
    if recorded is not None:
        old: dict[str, Any] = recorded.get("packs", {})
        gone = sorted(n for n in old if n not in current)
        health.gone_packs = len(gone)
        health.notes += [f"pack {n} is gone: the objects in it are lost" for n in gone]
        health.lost = health.lost or bool(gone)
        changed = {n for n, key in current.items() if n in old and old[n] != key}
        health.lost = health.lost or bool(changed)  # an index rewritten by a failed run drops objects too
        suspects |= changed
    for name in sorted(suspects & set(current)):
        bad = packs.unindex_bad(store.packs, store.tmp, name)
        if bad:
            health.notes.append(
                f"pack {name}: {plural(len(bad), 'object')} dropped (their bytes do not match their hash)"
            )
            health.dropped.update(bad)
            health.lost = True
    _drop_loose(store, loose, health)
    if recorded is not None and loose_count(store) < int(recorded.get("loose", 0)):
        health.notes.append("loose objects are gone from objects/: the files they held are read again")
        health.lost = True
    store.reload()
    store.lost = health.lost
    return health


def _drop_loose(store: ObjectStore, noted: set[str], health: Health) -> None:
    for sha in sorted(noted):
        path = store.path(sha)
        try:
            if _hash_file(path) == sha:
                continue
        except FileNotFoundError:
            continue
        path.unlink()
        health.notes.append(f"object {sha} does not match its hash: dropped")
        health.dropped.add(sha)
        health.lost = True


def record(store: ObjectStore) -> None:
    """Write the store's inventory and forget the damage noted so far (both now accounted for).

    Damage noted during the backup (a folder list that failed its hash while the walk read it) is
    dropped first: the backup stored a good copy, and the bad one must not be found instead.
    """
    noted_packs, noted_loose = _noted_damage(store.root / DAMAGE)
    for name in sorted(noted_packs & set(pack_keys(store.packs))):
        packs.unindex_bad(store.packs, store.tmp, name)
    _drop_loose(store, noted_loose, Health())
    store.reload()
    _write(store.root, {"packs": pack_keys(store.packs), "loose": loose_count(store)})
    (store.root / DAMAGE).unlink(missing_ok=True)


def adjust(store: ObjectStore, removed: Iterable[str], added: Iterable[str], loose_removed: int) -> None:
    """Account for what a prune removed and wrote, leaving every other difference for a backup to see."""
    document = _read(store.root / INVENTORY)
    if document is None:
        return  # no inventory: the next backup counts the store as lost anyway
    kept: dict[str, Any] = document.get("packs", {})
    for name in removed:
        kept.pop(name, None)
    now = pack_keys(store.packs)
    kept.update({name: now[name] for name in added if name in now})
    _write(store.root, {"packs": kept, "loose": max(0, int(document.get("loose", 0)) - loose_removed)})


def _write(root: Path, document: dict[str, Any]) -> None:
    temp = root / f"{INVENTORY}.new"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, json.dumps(document, sort_keys=True).encode("ascii"))
    finally:
        os.close(fd)
    os.replace(temp, root / INVENTORY)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pack_keys(folder: Path) -> dict[str, PackKey]:
    """Each indexed pack's (pack size, pack ctime, index size, index ctime); a pack that is gone: skipped."""
    keys: dict[str, PackKey] = {}
    for name in packs.pack_names(folder):
        try:
            pack, index = os.stat(folder / f"{name}.pack"), os.stat(folder / f"{name}.idx")
        except FileNotFoundError:
            continue
        keys[name] = [pack.st_size, pack.st_ctime_ns, index.st_size, index.st_ctime_ns]
    return keys


def loose_count(store: ObjectStore) -> int:
    """How many loose objects objects/<2 hex>/ holds."""
    return sum(1 for _ in store.loose_entries())


def _read(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # torn or damaged: the store counts as lost once, which is only slower
    return document if isinstance(document, dict) else None


def _noted_damage(path: Path) -> tuple[set[str], set[str]]:
    """The packs and loose objects verify found damaged, from damage.jsonl."""
    found_packs: set[str] = set()
    found_loose: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="ascii", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(entry, dict):
                continue
            pack, loose = entry.get("pack"), entry.get("loose")
            if isinstance(pack, str) and HEX.fullmatch(pack):
                found_packs.add(pack)
            elif isinstance(loose, str) and HEX.fullmatch(loose):
                found_loose.add(loose)
    return found_packs, found_loose
