"""Benchmark `guard backup copy` against a plain `rclone copy` of the repository folder.

Usage: .venv/bin/python -m bench.offsite [--ads 20000] [--runs 3] [--reuse]

On one demo world: a first guard backup, then, side by side and alternating, `guard backup copy --to
DIR` (list once, send the difference, verify sizes and hashes, manifest last) and `rclone copy
BACKUP_DIR DIR` (what an operator would otherwise run) into fresh local-path remotes; then 1% of the
files rewritten, a second backup, and both copies again into the same remotes (the incremental
copy). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.backup import change_one_percent
from bench.common import WORK, Run, median_of, spread, timed, world

HERE = WORK / "offsite"


def guard_env(truth: dict[str, Any]) -> dict[str, str]:
    return {
        "DATABASE_URL": str(truth["database_url"]),
        "UPLOADS_ROOT": str(truth["uploads_root"]),
        "BACKUP_DIR": str(HERE / "repo"),
    }


def backup(env: dict[str, str]) -> None:
    done = timed([sys.executable, "-m", "guard", "backup", "--json"], env)
    if done.returncode not in (0, 1):
        raise SystemExit(f"guard backup failed with {done.returncode}")


def both(env: dict[str, str], runs: int, step: str) -> dict[str, list[Run]]:
    """Copy with guard and with rclone into remote folder i of each, alternating."""
    out: dict[str, list[Run]] = {"guard": [], "rclone": []}
    for i in range(runs):
        guard = timed(
            [sys.executable, "-m", "guard", "backup", "copy", "--to", str(HERE / f"guard-{i}"), "--json"], env
        )
        if guard.returncode != 0:
            raise SystemExit(f"guard backup copy ({step}) failed with {guard.returncode}")
        peer = timed(
            [
                "rclone",
                "copy",
                "--exclude",
                "/lock",
                "--exclude",
                "/tmp/**",
                env["BACKUP_DIR"],
                str(HERE / f"rclone-{i}"),
            ]
        )
        if peer.returncode != 0:
            raise SystemExit(f"rclone copy ({step}) failed with {peer.returncode}")
        out["guard"].append(guard)
        out["rclone"].append(peer)
    return out


def summary(runs: dict[str, list[Run]]) -> dict[str, Any]:
    g, r = median_of(runs["guard"]), median_of(runs["rclone"])
    sent = json.loads(g.stdout)
    return {
        "guard": spread(runs["guard"]),
        "rclone": spread(runs["rclone"]),
        "ratio": round(g.wall_s / r.wall_s, 2),
        "guard_sent_files": len(sent["sent_files"]),
        "guard_sent_bytes": sent["sent_bytes"],
        "guard_hash_checked": sent["hash_checked"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="reuse bench/work's offsite world")
    args = parser.parse_args()
    truth = world("guard_bench_offsite", args.ads, 0.01, args.reuse)
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    env = guard_env(truth)
    backup(env)
    repo_bytes = sum(p.stat().st_size for p in (HERE / "repo").rglob("*") if p.is_file())
    first = both(env, args.runs, "first")
    changed = change_one_percent(Path(str(truth["uploads_root"])) / "uploads" / "ads")
    backup(env)
    second = both(env, args.runs, "second")
    print(
        json.dumps(
            {
                "ads": args.ads,
                "files_changed": changed,
                "repository_bytes_after_first_backup": repo_bytes,
                "first_copy": summary(first),
                "second_copy_after_1pct": summary(second),
            },
            indent=2,
        )
    )
    shutil.rmtree(HERE, ignore_errors=True)


if __name__ == "__main__":
    main()
