"""Benchmark guard backup against restic and `rsync -a --link-dest` on the same database and uploads.

Usage: .venv/bin/python -m bench.backup [--ads 500000] [--reuse] [--runs 1] [--no-restic] [--skip-restore]

Builds (or with --reuse, reuses) a demo world under bench/work/backup/ (500,000 ads is about one
million files), then, per run and side by side on the same tree:
- the cache warmed, untimed: every file read and the database dumped once, so the tool that goes
  first does not pay alone for a cold cache;
- a full backup: guard; `pg_dump -Fc` + `restic backup` of the dump and the uploads folder;
  `pg_dump -Fc` + `rsync -a` into a snapshot folder;
- 1% of the files rewritten with new content, then a second backup by each (rsync with
  `--link-dest` into a new snapshot folder);
- each repository's size on disk after both;
- `guard backup verify --read-data` (every backup) against `restic check --read-data`;
- a restore of the second backup: `guard restore ID` into a new scratch database and folder, up to
  the end of its checks, against `restic restore` + `createdb` + `pg_restore` of its dump.
Prints the table and one JSON object. restic is Debian's `restic` package (apt-get install restic);
without it the bench says so and exits 2 (or pass --no-restic). Copies left by an earlier run are
removed first, followed by a sync and a 361 s wait (see settle()); a run leaves its copies in place
so the next one pays the wait once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guard.backup import run_backup
from guard.backup.repo.repository import Repository
from guard.backup.restorer import maintenance_url, restore_backup
from guard.backup.verify import verify_all
from guard.config.settings import Settings
from guard.db.database import Database
from guard.db.servers import drop_database, url_with_database
from guard.demo.world import build_world

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("GUARD_BENCH_BACKUP_WORK", ROOT / "bench" / "work" / "backup"))
SERVER_URL = os.environ.get("GUARD_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("GUARD_BENCH_BACKUP_DB", "guard_bench_restore")
PEER_DB = "guard_bench_peer_restore"
SETTLE_S = 361
SCRATCH = ("repo", "rsync", "restored", "restic", "restic-restored", "dumps", "runs")
RUN = WORK / "runs" / "first"  # this round's copies (repositories, snapshots, restores); set per round
RESTIC_ENV = {"RESTIC_PASSWORD": "bench-only-password", "RESTIC_CACHE_DIR": str(WORK / "restic-cache")}
NO_RESTIC = "restic not found: install Debian's package (apt-get install restic) or pass --no-restic"


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


def clean_up(settings: Settings | None, remove: bool = True) -> None:
    """Remove what earlier runs left (copies, the peer's database) and settle when files went.

    remove False (--no-clean): earlier rounds' copies stay (each round has its own folder), so no
    settle is needed; remove them later with a run without it.
    """
    removed = False
    for scratch in SCRATCH if remove else ():
        removed = (WORK / scratch).exists() or removed
        shutil.rmtree(WORK / scratch, ignore_errors=True)
    if settings is not None:  # only the peer's database: guard's scratch ones are dropped as made
        with Database(maintenance_url(settings)) as server:
            server.execute(drop_database(PEER_DB))
    if removed:
        settle()


def timed(label: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    print(f"{label} ...", file=sys.stderr, flush=True)
    os.sync()
    started = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - started
    print(f"{label}: {wall:.1f} s", file=sys.stderr, flush=True)
    return wall, value


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True
    )
    return done.stdout


def pg_dump(database_url: str, out: Path) -> None:
    """What an operator runs before restic or rsync: `pg_dump -Fc` (its default compression)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run(["pg_dump", "-Fc", "--file", str(out), f"--dbname={database_url}"])


def rsync_backup(database_url: str, uploads: Path, dest: Path, link_dest: Path | None) -> None:
    pg_dump(database_url, dest / "db.dump")
    command = ["rsync", "-a", f"{uploads}/", f"{dest}/uploads/"]
    if link_dest is not None:
        command.insert(2, f"--link-dest={link_dest}/uploads")
    run(command)


def restic(*args: str) -> str:
    return run(["restic", "--repo", str(RUN / "restic"), "--quiet", *args], RESTIC_ENV)


def restic_backup(database_url: str, uploads: Path) -> None:
    dump = RUN / "dumps" / "db.dump"
    pg_dump(database_url, dump)
    restic("backup", str(dump), str(uploads))


def restic_restore(database_url: str, target: Path) -> None:
    """`restic restore latest` into a new folder, then the dump into a new database (`pg_restore`)."""
    restic("restore", "latest", "--target", str(target))
    dump = target / str(RUN / "dumps" / "db.dump").lstrip("/")
    server = url_with_database(database_url, "postgres")
    run(["createdb", f"--maintenance-db={server}", PEER_DB])
    # Not --exit-on-error: the world plants rows that violate a foreign key, so one ALTER fails (as in
    # guard's restore, which adds that key NOT VALID); everything else is restored.
    command = [
        "pg_restore",
        "--no-owner",
        "--no-privileges",
        f"--dbname={url_with_database(database_url, PEER_DB)}",
    ]
    subprocess.run([*command, str(dump)], check=False, stderr=subprocess.DEVNULL)


def du(path: Path, exclude: str | None = None) -> int:
    """Bytes on disk under a folder (hard links counted once, as `du` does)."""
    command = ["du", "-s", "-B1"] + ([f"--exclude={exclude}"] if exclude else []) + [str(path)]
    return int(run(command).split()[0])


def warm(database_url: str, uploads: Path) -> None:
    """Read every file of the tree and dump the database once, untimed, before the full backups.

    Whoever goes first would otherwise pay for a cold cache alone (guard does: on this shared machine
    the world's inodes were often evicted between runs, and a cold read of one of its files took
    ~400 us against ~30 us warm), and the tool after it would find everything cached.
    """
    for folder, _, names in os.walk(uploads):
        for name in names:
            path = os.path.join(folder, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # a symlink the world plants, or a file gone meanwhile
            try:
                while os.read(fd, 1 << 20):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
    run(["pg_dump", "-Fc", "--no-sync", "--file", os.devnull, f"--dbname={database_url}"])


def change_one_percent(ads_dir: Path) -> int:
    """Rewrite every hundredth file (in name order) with new content, distinct from any earlier run."""
    names = sorted(os.listdir(ads_dir))
    stamp = time.time_ns()
    changed = 0
    for i in range(0, len(names), 100):
        path = ads_dir / names[i]
        if path.is_file() and not path.is_symlink():
            path.write_bytes(f"changed picture {i} in run {stamp}\n".encode())
            changed += 1
    return changed


def one_run(settings: Settings, truth: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One side-by-side round; returns each step's wall seconds by tool."""
    uploads = Path(truth["uploads_root"])
    url = truth["database_url"]
    peers = not args.no_restic
    (RUN / "rsync").mkdir()
    if peers:
        restic("init")
    out: dict[str, Any] = {"full": {}, "second": {}, "size_mb": {}, "verify": {}, "restore": {}}
    out["warm_s"], _ = timed(
        "warming the cache (every file read, the database dumped)", lambda: warm(url, uploads)
    )
    out["full"]["guard"], full = timed("guard backup (full)", lambda: run_backup(settings))
    if peers:
        out["full"]["restic"], _ = timed(
            "pg_dump + restic backup (full)", lambda: restic_backup(url, uploads)
        )
    if not args.no_rsync:
        out["full"]["rsync"], _ = timed(
            "pg_dump + rsync -a (full)", lambda: rsync_backup(url, uploads, RUN / "rsync" / "snap1", None)
        )
    out["counts"] = full.manifest.counts
    out["changed_files"] = change_one_percent(uploads / "uploads" / "ads")
    out["second"]["guard"], second = timed("guard backup (after 1% changed)", lambda: run_backup(settings))
    if peers:
        out["second"]["restic"], _ = timed(
            "pg_dump + restic backup (second)", lambda: restic_backup(url, uploads)
        )
    if not args.no_rsync:
        out["second"]["rsync"], _ = timed(
            "pg_dump + rsync -a --link-dest",
            lambda: rsync_backup(url, uploads, RUN / "rsync" / "snap2", RUN / "rsync" / "snap1"),
        )
    out["size_mb"]["guard"] = du(RUN / "repo", exclude="restores") / 1e6
    if peers:
        out["size_mb"]["restic"] = du(RUN / "restic") / 1e6
    if not args.no_rsync:
        out["size_mb"]["rsync"] = du(RUN / "rsync") / 1e6
    repo = Repository.open(RUN / "repo", create=False)
    out["verify"]["guard"], verdicts = timed(
        "guard backup verify --read-data", lambda: verify_all(repo, read_data=True)
    )
    if not all(v.ok for v in verdicts):
        raise SystemExit(f"guard verify found problems: {[v.examples for v in verdicts if not v.ok]}")
    if peers:
        out["verify"]["restic"], _ = timed("restic check --read-data", lambda: restic("check", "--read-data"))
    if args.skip_restore:
        return out
    for turn in range(args.restores):
        restore_s, restored = timed(
            "guard restore (into a new database and folder, with every check)",
            lambda t=turn: restore_backup(settings, second.id, uploads_dir=RUN / "restored" / str(t)),
        )
        out["restore"].setdefault("guard", []).append(restore_s)
        out["restore"].setdefault("guard_detail", []).append(
            {
                "restore_s": round(restored.duration_s, 1),
                "checks_s": round(sum(c.duration_s for c in restored.checks), 1),
                "files": restored.files,
            }
        )
        with Database(maintenance_url(settings)) as server:
            server.execute(drop_database(restored.target_db))
        if peers:
            target = RUN / "restic-restored" / str(turn)
            restic_s, _ = timed("restic restore + pg_restore", lambda t=target: restic_restore(url, t))
            out["restore"].setdefault("restic", []).append(restic_s)
            with Database(maintenance_url(settings)) as server:
                server.execute(drop_database(PEER_DB))
    return out


def table(runs: list[dict[str, Any]], peers: bool) -> str:
    def cell(step: str, tool: str) -> str:
        values = [v for r in runs for v in _as_list(r[step].get(tool))]
        if not values:
            return "-"
        unit = " MB" if step == "size_mb" else " s"
        if len(values) == 1:
            return f"{values[0]:.1f}{unit}"
        return f"{statistics.median(values):.1f}{unit} ({min(values):.1f}-{max(values):.1f}, n={len(values)})"

    def ratio(step: str) -> str:
        g = [v for r in runs for v in _as_list(r[step].get("guard"))]
        p = [v for r in runs for v in _as_list(r[step].get("restic"))]
        if not g or not p:
            return "-"
        return f"{statistics.median(g) / statistics.median(p):.2f}x"

    steps = [
        ("full", "first (full) backup"),
        ("second", "second backup, 1% of files changed"),
        ("size_mb", "repository size after both"),
        ("verify", "verify --read-data / restic check --read-data"),
        ("restore", "restore into a new database and folder"),
    ]
    lines = ["| step | guard | restic | rsync --link-dest | guard/restic |", "|---|---|---|---|---|"]
    for step, label in steps:
        lines.append(
            f"| {label} | {cell(step, 'guard')} | {cell(step, 'restic') if peers else '-'} "
            f"| {cell(step, 'rsync')} | {ratio(step) if peers else '-'} |"
        )
    return "\n".join(lines)


def _as_list(value: Any) -> list[float]:
    if value is None:
        return []
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def main() -> None:
    global RUN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true", help="reuse bench/work/backup's world")
    parser.add_argument(
        "--runs", type=int, default=1, help="side-by-side rounds (each from empty repositories)"
    )
    parser.add_argument(
        "--restores", type=int, default=1, help="restores per round, guard and restic in turn"
    )
    parser.add_argument("--no-restic", action="store_true", help="compare with rsync only")
    parser.add_argument("--no-rsync", action="store_true", help="compare with restic only (saves ~5 min)")
    parser.add_argument("--skip-restore", action="store_true", help="stop after the verify step")
    parser.add_argument(
        "--no-clean", action="store_true", help="leave earlier runs' copies (no 361 s settle; they take disk)"
    )
    args = parser.parse_args()
    if not args.no_restic and shutil.which("restic") is None:
        print(NO_RESTIC, file=sys.stderr)
        raise SystemExit(2)
    truth = world(args.ads, args.reuse)
    uploads = Path(truth["uploads_root"])
    settings = Settings(database_url=truth["database_url"], uploads_root=uploads, backup_dir=RUN / "repo")
    report: dict[str, Any] = {"world": {k: truth[k] for k in ("ads", "image_rows", "files")}, "runs": []}
    clean_up(settings, remove=not args.no_clean)
    for number in range(args.runs):
        RUN = WORK / "runs" / time.strftime("%Y%m%dT%H%M%S")
        RUN.mkdir(parents=True)
        settings = settings.replace(backup_dir=RUN / "repo")
        if number:
            clean_up(settings, remove=False)
        print(f"round {number + 1} of {args.runs}", file=sys.stderr, flush=True)
        report["runs"].append(one_run(settings, truth, args))
        print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)  # kept if a later round fails
    print(table(report["runs"], not args.no_restic))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
