"""Benchmark guard backup against `rsync -a --link-dest` on the same uploads tree.

Usage: .venv/bin/python -m bench.backup [--ads 500000] [--reuse] [--skip-restore]

Builds (or with --reuse, reuses) a demo world under bench/work/backup/ (500,000 ads is about one
million files), then measures, on the same tree: a full guard backup and a full rsync copy; 1% of the
files rewritten with new content; a second guard backup and `rsync -a --link-dest` into a new snapshot
folder; and a full guard restore into a scratch database and folder. Prints one JSON object.
Copies left by an earlier run are removed first and this run's last, each time followed by a sync
and a 361 s wait (see settle()).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from guard.backup import run_backup
from guard.backup.restorer import maintenance_url, restore_backup
from guard.config.settings import Settings
from guard.db.database import Database
from guard.db.servers import drop_database
from guard.demo.world import build_world

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "backup"
SERVER_URL = os.environ.get("GUARD_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = "guard_bench_backup"
SETTLE_S = 361


def world(ads: int, reuse: bool) -> dict[str, Any]:
    truth_file = WORK / "truth.json"
    if reuse and truth_file.exists():
        truth: dict[str, Any] = json.loads(truth_file.read_text())
        if truth.get("ads") == ads:
            return truth
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    truth = build_world(SERVER_URL, DB_NAME, WORK / "uploads", ads, 0.01)
    truth["build_s"] = round(time.perf_counter() - started, 1)
    truth_file.write_text(json.dumps(truth, indent=2))
    return truth


def settle() -> None:
    """Wait until the inodes a clean-up just freed no longer count as recently deleted.

    ext4 without a journal (this machine's /) avoids reusing an inode freed less than 60 s ago, or
    360 s while its inode table block is dirty (RECENTCY_MIN + RECENTCY_DIRTY in fs/ext4/ialloc.c),
    and every create scans past each such free inode (recently_deleted() in find_inode_bit). Any
    create dirties its block again, so a sync does not shorten the wait. Right after a million files
    are removed, each file either tool creates costs up to milliseconds of kernel time (100,000
    creates: 2.4 s on a quiet file system, 52.6 s right after removing 100,000 files), which would
    measure the clean-up, not the tools.
    """
    print(f"settling {SETTLE_S} s after the clean-up ...", file=sys.stderr, flush=True)
    os.sync()
    time.sleep(SETTLE_S)


def clean_up() -> None:
    """Remove this run's copies and settle, so the next benchmark does not pay for the freed inodes.

    Still under the machine lock: the next holder may be another engineer's benchmark.
    """
    for scratch in ("rsync", "restored"):
        shutil.rmtree(WORK / scratch, ignore_errors=True)
    settle()


def timed(label: str, fn: Any) -> tuple[float, Any]:
    print(f"{label} ...", file=sys.stderr, flush=True)
    os.sync()
    started = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - started
    print(f"{label}: {wall:.1f} s", file=sys.stderr, flush=True)
    return wall, value


def rsync(source: Path, dest: Path, link_dest: Path | None = None) -> None:
    command = ["rsync", "-a", f"{source}/", f"{dest}/"]
    if link_dest is not None:
        command.insert(2, f"--link-dest={link_dest}")
    subprocess.run(command, check=True)


def change_one_percent(ads_dir: Path) -> int:
    """Rewrite every hundredth file (in name order) with new content, distinct from any earlier run."""
    names = sorted(os.listdir(ads_dir))
    run = time.time_ns()
    changed = 0
    for i in range(0, len(names), 100):
        path = ads_dir / names[i]
        if path.is_file() and not path.is_symlink():
            path.write_bytes(f"changed picture {i} in run {run}\n".encode())
            changed += 1
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true", help="reuse bench/work/backup's world")
    parser.add_argument("--skip-restore", action="store_true", help="stop after the incremental step")
    args = parser.parse_args()
    truth = world(args.ads, args.reuse)
    uploads = Path(truth["uploads_root"])
    ads_dir = uploads / "uploads" / "ads"
    removed = False
    for scratch in ("repo", "rsync", "restored"):
        removed = (WORK / scratch).exists() or removed
        shutil.rmtree(WORK / scratch, ignore_errors=True)
    if removed:
        settle()
    (WORK / "rsync").mkdir()
    settings = Settings(database_url=truth["database_url"], uploads_root=uploads, backup_dir=WORK / "repo")
    report: dict[str, Any] = {"world": {k: truth[k] for k in ("ads", "image_rows", "files")}}
    full_s, full = timed("guard backup (full)", lambda: run_backup(settings))
    rsync_full_s, _ = timed("rsync -a (full)", lambda: rsync(ads_dir, WORK / "rsync" / "snap1"))
    report["full"] = {
        "guard_backup_s": round(full_s, 1),
        "rsync_s": round(rsync_full_s, 1),
        "counts": full.manifest.counts,
        "dump_bytes": full.manifest.dump.size,
    }
    report["changed_files"] = change_one_percent(ads_dir)
    incr_s, incr = timed("guard backup (after 1% changed)", lambda: run_backup(settings))
    link_s, _ = timed(
        "rsync -a --link-dest",
        lambda: rsync(ads_dir, WORK / "rsync" / "snap2", link_dest=WORK / "rsync" / "snap1"),
    )
    report["incremental"] = {
        "guard_backup_s": round(incr_s, 1),
        "rsync_link_dest_s": round(link_s, 1),
        "speedup": round(link_s / incr_s, 1),
        "counts": incr.manifest.counts,
    }
    print(json.dumps(report), file=sys.stderr, flush=True)  # kept even if the restore step fails
    if args.skip_restore:
        clean_up()
        print(json.dumps(report, indent=2))
        return
    restore_s, restored = timed(
        "guard restore (full)",
        lambda: restore_backup(settings.replace(), incr.id, uploads_dir=WORK / "restored"),
    )
    report["restore"] = {
        "wall_s": round(restore_s, 1),
        "restore_only_s": round(restored.duration_s, 1),
        "checks_s": round(sum(c.duration_s for c in restored.checks), 1),
        "files": restored.files,
    }
    with Database(maintenance_url(settings)) as server:
        server.execute(drop_database(restored.target_db))
    clean_up()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
