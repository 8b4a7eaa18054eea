"""Issue 2's benchmark: `guard check files` and `guard check integrity` against their standard-tools floors.

Usage: .venv/bin/python -m bench.files_integrity [--ads 500000 [...]] [--runs 3] [--reuse] [--sample 0]
       [--only files|integrity] [--tag NAME]

With several --ads it also prints the scaling table: each world's time and peak memory against the
smallest world's, next to how much the data grew.
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

from bench.common import ROOT, WORK, Run, median_of, spread, timed, world

GUARD = [sys.executable, "-m", "guard"]
BEFORE: Path | None = None  # --before: an older checkout timed alongside
TAG = ""  # --tag: a suffix for the worlds' database names
CHECKS = ("files", "integrity")

FLOOR_FILES = r"""
LC_ALL=C comm -3 \
  <(psql -X -At -d "$DATABASE_URL" -c "\copy (SELECT file_path FROM ad_images) TO STDOUT" | LC_ALL=C sort) \
  <(cd "$UPLOADS_ROOT" && find uploads/ads -type f | LC_ALL=C sort) | wc -l
"""

# The integrity floor: one hand-written statement computing the seven default rules' counts in one
# pass over each table. ads is read once, grouped by slug (blank, format and uniqueness are properties
# of the slug, so each is decided once per distinct slug; the title count rides along); ad_images is
# read once, joined to the ads' keys. It runs with the work_mem guard's sweeps set (so neither spills)
# and PostgreSQL's defaults otherwise, parallel workers and JIT included.
HAND_SQL = r"""
WITH s AS (
  SELECT slug IS NULL OR btrim(slug, E' \t\r\n\f\v') = '' AS blank,
         slug !~ '^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$' AS bad_format,
         count(*) AS n,
         count(*) FILTER (WHERE title IS NULL OR btrim(title, E' \t\r\n\f\v') = '') AS no_title
  FROM ads GROUP BY slug
), i AS (
  SELECT count(*) FILTER (WHERE i.file_path IS NULL OR btrim(i.file_path, E' \t\r\n\f\v') = '') AS no_path,
         count(*) FILTER (WHERE i.ad_id IS NOT NULL AND a.id IS NULL) AS no_ad
  FROM ad_images i LEFT JOIN ads a ON a.id = i.ad_id
)
SELECT
  coalesce(sum(n) FILTER (WHERE blank), 0) AS slug_required,
  coalesce(sum(n) FILTER (WHERE NOT blank AND bad_format), 0) AS slug_format,
  coalesce(sum(n) FILTER (WHERE NOT blank AND n > 1), 0) AS slug_unique,
  coalesce(sum(no_title), 0) AS title_required,
  (SELECT count(*) FROM categories WHERE name IS NULL OR btrim(name, E' \t\r\n\f\v') = '')
    AS category_name,
  (SELECT no_path FROM i) AS file_path_required,
  (SELECT no_ad FROM i) AS ad_id_references
FROM s
"""
HAND_ENV = {"PGOPTIONS": "-c work_mem=64MB"}

SEED_FS_TO_DB = r"""
# The seed's check-file-sync.sh, filesystem -> database direction, verbatim but for paths:
# one psql per file, counters in a pipeline subshell.
UPLOADS_DIR="$SAMPLE"
MISSING=0
find "$UPLOADS_DIR" -type f -name "*.webp" | while read file; do
  FILENAME=$(basename "$file")
  COUNT=$(psql "$DATABASE_URL" -tAc "
    SELECT COUNT(*) FROM ad_images WHERE filename = '$FILENAME'
  ")
  if [ "$COUNT" -eq 0 ]; then
    echo "Filesystem orphan: $FILENAME (not in DB)"
    ((MISSING++))
  fi
done
if [ $MISSING -gt 0 ]; then exit 1; fi
echo "File sync check passed"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ads", type=int, nargs="+", default=[500_000], help="one world per size (the scaling table)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout of guard (with its .venv) to time in the same runs: before/after",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse bench/work's world if it matches")
    parser.add_argument(
        "--sample", type=int, default=2000, help="files for the seed script's run (0: skip it)"
    )
    parser.add_argument("--only", choices=CHECKS, help="time one check (both by default)")
    parser.add_argument(
        "--tag", default="", help="appended to the worlds' database names, so helpers' worlds never collide"
    )
    args = parser.parse_args()
    global BEFORE, TAG
    BEFORE, TAG = args.before, args.tag
    compile_checkouts()
    reports = [measure(ads, args) for ads in args.ads]
    if len(reports) > 1:
        print(json.dumps({"worlds": reports, "scaling": scaling(reports)}, indent=2))
    else:
        print(json.dumps(reports[0], indent=2))


def compile_checkouts() -> None:
    """Compile guard's modules in each checkout timed, as installing a wheel does.

    An editable checkout's modules are compiled at their first import, and with PYTHONDONTWRITEBYTECODE
    set (as on the shared machine) at every run: 25 modules, about a tenth of the command's start-up.
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "guard"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    if BEFORE is not None:
        before = [str(BEFORE / ".venv/bin/python"), "-m", "compileall", "-q", "guard"]
        subprocess.run(before, cwd=BEFORE, check=True, stdout=subprocess.DEVNULL)


def measure(ads: int, args: argparse.Namespace) -> dict[str, Any]:
    """Both checks against their floors on the world of this size, side by side."""
    truth = world(world_name(ads), ads, 0.01, args.reuse)
    env = {"DATABASE_URL": truth["database_url"], "UPLOADS_ROOT": truth["uploads_root"]}
    report: dict[str, Any] = {"world": {k: truth[k] for k in ("ads", "image_rows", "files")}}
    report["world"].update(
        build_wall_s=truth.get("build_wall_s"), build_max_rss_mb=truth.get("build_max_rss_mb")
    )
    started_load = os.getloadavg()[0]
    if args.only in (None, "files"):
        report["files"] = compare_files(env, truth, args.runs)
    if args.only in (None, "integrity"):
        report["integrity"] = compare_integrity(env, truth, args.runs)
    # Other work on the machine shows here: 2 cores, so anything over ~2 means the tools took turns.
    report["load_avg_1m"] = {"start": round(started_load, 2), "end": round(os.getloadavg()[0], 2)}
    if args.sample and ads == args.ads[0]:
        report["seed_script"] = seed_script(env, truth, args.sample)
    return report


def scaling(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each world's medians against the smallest's: time and memory per million files (or rows)."""
    rows = []
    base = reports[0]
    for r in reports:
        grown = r["world"]["files"] / base["world"]["files"]
        row: dict[str, Any] = {
            "ads": r["world"]["ads"],
            "files": r["world"]["files"],
            "data_x": round(grown, 2),
        }
        for check in (c for c in CHECKS if c in r):
            row[f"{check}_guard_s"] = r[check]["guard_median_s"]
            row[f"{check}_floor_s"] = r[check]["baseline_median_s"]
            row[f"{check}_time_x"] = round(r[check]["guard_median_s"] / base[check]["guard_median_s"], 2)
            row[f"{check}_rss_mb"] = r[check]["guard_max_rss_mb"]
            row[f"{check}_rss_x"] = round(r[check]["guard_max_rss_mb"] / base[check]["guard_max_rss_mb"], 2)
        rows.append(row)
    return rows


def world_name(ads: int) -> str:
    """One world per size, so the scaling runs can reuse each of them."""
    return f"guard_bench_files_{ads}{'_' + TAG if TAG else ''}"


def warm(env: dict[str, str]) -> None:
    timed(["bash", "-c", FLOOR_FILES], env)


def compare_files(env: dict[str, str], truth: dict[str, Any], runs: int) -> dict[str, Any]:
    warm(env)
    floor: list[Run] = []
    ours: list[Run] = []
    before: list[Run] = []
    command = ["check", "files", "--json", "--limit", "5"]
    for _ in range(runs):  # interleaved so both see the same machine state
        floor.append(timed(["bash", "-c", FLOOR_FILES], env))
        ours.append(timed([*GUARD, *command], env))
        if BEFORE is not None:
            before.append(timed([str(BEFORE / ".venv/bin/python"), "-m", "guard", *command], env, BEFORE))
    counts = json.loads(median_of(ours).stdout)["checks"][0]["counts"]
    assert counts == expected_files(truth), (counts, truth["files_check"])
    result = _ratio(floor, ours, "floor (psql \\copy | sort, find | sort, comm)", "guard check files")
    return _with_before(result, floor, before)


def expected_files(truth: dict[str, Any]) -> dict[str, int]:
    """The planted counts; the world's fresh uploads become orphans once its grace period is over."""
    expected = dict(truth["files_check"])
    built = (WORK / f"{world_name(truth['ads'])}.truth.json").stat().st_mtime
    if time.time() - built > 600:
        expected["orphan_file"] += truth["not_counted"]["fresh_upload"]
    return expected


def compare_integrity(env: dict[str, str], truth: dict[str, Any], runs: int) -> dict[str, Any]:
    hand: list[Run] = []
    ours: list[Run] = []
    before: list[Run] = []
    command = ["check", "integrity", "--json", "--limit", "5"]
    floor = ["psql", "-X", "-At", "-d", env["DATABASE_URL"], "-c", HAND_SQL]
    timed(floor, {**env, **HAND_ENV})  # warm: with --only integrity no files check read the tables first
    for _ in range(runs):
        hand.append(timed(floor, {**env, **HAND_ENV}))
        ours.append(timed([*GUARD, *command], env))
        if BEFORE is not None:
            before.append(timed([str(BEFORE / ".venv/bin/python"), "-m", "guard", *command], env, BEFORE))
    counts = json.loads(median_of(ours).stdout)["checks"][0]["counts"]
    assert counts == truth["integrity"], (counts, truth["integrity"])
    hand_counts = [int(v) for v in median_of(hand).stdout.strip().split("|")]
    assert hand_counts == list(truth["integrity"].values()), hand_counts
    result = _ratio(hand, ours, "one hand-written one-pass SQL statement (psql)", "guard check integrity")
    return _with_before(result, hand, before)


def _with_before(result: dict[str, Any], base: list[Run], before: list[Run]) -> dict[str, Any]:
    if before:
        b = median_of(before)
        result.update(
            before_wall=spread(before),
            before_max_rss_mb=round(b.max_rss_mb),
            before_ratio=round(b.wall_s / median_of(base).wall_s, 2),
        )
    return result


def _ratio(base: list[Run], ours: list[Run], base_name: str, our_name: str) -> dict[str, Any]:
    b, o = median_of(base), median_of(ours)
    return {
        "baseline": base_name,
        "baseline_wall": spread(base),
        "baseline_max_rss_mb": round(b.max_rss_mb),
        "guard": our_name,
        "guard_wall": spread(ours),
        "guard_max_rss_mb": round(o.max_rss_mb),
        "ratio": round(o.wall_s / b.wall_s, 2),
        "baseline_median_s": round(b.wall_s, 3),
        "guard_median_s": round(o.wall_s, 3),
    }


def seed_script(env: dict[str, str], truth: dict[str, Any], sample: int) -> dict[str, Any]:
    """Time the seed's per-file loop on a sample of files, and show that it cannot fail."""
    folder = WORK / "seed-sample"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = Path(truth["uploads_root"]) / "uploads" / "ads"
    taken = 0
    with os.scandir(source) as entries:
        for entry in entries:
            if taken == sample:
                break
            if (
                entry.is_file(follow_symlinks=False)
                and entry.name.endswith(".webp")
                and "\n" not in entry.name
            ):
                os.link(entry.path, folder / entry.name)
                taken += 1
    (folder / "surely-an-orphan.webp").write_bytes(b"x")
    started = time.perf_counter()
    run = timed(["bash", "-c", SEED_FS_TO_DB], {**env, "SAMPLE": str(folder)})
    elapsed = time.perf_counter() - started
    orphans = run.stdout.count("Filesystem orphan")
    shutil.rmtree(folder, ignore_errors=True)
    per_file_ms = elapsed / (taken + 1) * 1000
    return {
        "files": taken + 1,
        "wall_s": round(elapsed, 1),
        "per_file_ms": round(per_file_ms, 1),
        "extrapolated_1m_files_h": round(per_file_ms * 1_000_000 / 1000 / 3600, 1),
        "orphans_printed": orphans,
        "exit_code": run.returncode,
    }


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
