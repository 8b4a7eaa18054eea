"""Print where a backup repository's bytes go: stored bytes per kind of object, indexes, manifests.

Usage: .venv/bin/python -m bench.repo_bytes REPOSITORY [--json]

Reads every published manifest (and its folder lists) to sort each packed or loose object into the
kind the manifests name it as: folder list pages, dump chunks, uploads; anything
no manifest names is "unreferenced". Pack indexes and manifest files are counted by their file size.
Sizes are apparent (file) sizes; `du` rounds each file up to its blocks.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from guard.backup.repo import packs
from guard.backup.repo.repository import MANIFEST, Repository


def kinds(repo: Repository) -> dict[str, str]:
    """Every object the manifests name, by SHA-256, with its kind (the first kind it is named as)."""
    kind: dict[str, str] = {}
    for _, manifest in repo.manifests():
        if isinstance(manifest, Exception):
            continue
        for folder in manifest.folders:
            for page in folder.pages:
                kind.setdefault(page.sha256, "folder lists")
        for chunk in manifest.dump.chunks:
            kind.setdefault(chunk.sha256, "dump chunks")
        for entry in manifest.files:
            kind.setdefault(entry.sha256, "uploads")
    return kind


def survey(root: Path) -> dict[str, Any]:
    repo = Repository.open(root, create=False)
    kind = kinds(repo)
    stored: dict[str, int] = defaultdict(int)
    raw: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    index_bytes = 0
    for name in packs.pack_names(repo.packs):
        index_bytes += (repo.packs / f"{name}.idx").stat().st_size
        for sha, _, held, size in packs.read_index(repo.packs / f"{name}.idx") or []:
            k = kind.get(sha, "unreferenced")
            stored[k] += held
            raw[k] += size
            count[k] += 1
    for entry in repo.store.loose_entries():
        k = kind.get(entry.name, "unreferenced") + " (loose)"
        size = entry.stat(follow_symlinks=False).st_size
        stored[k] += size
        raw[k] += size
        count[k] += 1
    manifests = [(repo.backups / i / MANIFEST).stat().st_size for i in repo.ids()]
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and "restores" not in f.parts)
    rows = {k: {"objects": count[k], "stored": stored[k], "raw": raw[k]} for k in sorted(stored)}
    rows["pack indexes"] = {"objects": len(packs.pack_names(repo.packs)), "stored": index_bytes, "raw": 0}
    rows["manifests"] = {"objects": len(manifests), "stored": sum(manifests), "raw": 0}
    return {"kinds": rows, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found = survey(args.repository)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    print("| kind | objects | stored | raw |\n|---|---|---|---|")
    for k, row in found["kinds"].items():
        raw = f"{row['raw'] / 1e6:.1f} MB" if row["raw"] else ""
        print(f"| {k} | {row['objects']:,} | {row['stored'] / 1e6:.1f} MB | {raw} |")
    print(f"| all files (apparent size) | | {found['total'] / 1e6:.1f} MB | |")
    print(f"du: {os.popen(f'du -s -B1 {args.repository}').read().split()[0]} bytes")


if __name__ == "__main__":
    main()
