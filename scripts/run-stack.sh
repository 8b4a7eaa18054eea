#!/usr/bin/env bash
# The live half of `make run`: guard install, the Procfile processes (and guard serve) on the demo world, the
# simulated app for SIM_SECONDS, a findings summary every few seconds, then everything stopped.
set -u
BIN=.venv/bin
SIM_SECONDS=${GUARD_DEMO_SECONDS:-40}
RUN=var/run-demo
mkdir -p "$RUN"
export DATABASE_URL UPLOADS_ROOT MIGRATIONS_DIR
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export BROKER_PREFIX="guard-demo-$$:" ORPHAN_GRACE=${ORPHAN_GRACE:-5} LEASE_SECONDS=10
export WATCH_RECONCILE_SECONDS=15 PYTHONUNBUFFERED=1
# The nightly chain (backup -> copy -> prune, weekly drill) against a local-path rclone remote under var/.
export BACKUP_DIR=${BACKUP_DIR:-$RUN/backups} BACKUP_REMOTES=${BACKUP_REMOTES:-$PWD/$RUN/offsite}
PIDS=()

stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  $BIN/python -c 'import os, redis; r = redis.Redis.from_url(os.environ["REDIS_URL"]); k = list(r.scan_iter(match=os.environ["BROKER_PREFIX"] + "*")); k and r.delete(*k)' 2>/dev/null
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() {  # name, command...
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=($!)
}

summary() {
  $BIN/guard findings --json | $BIN/python -c '
import json, sys, collections
doc = json.load(sys.stdin)
rows = doc["findings"]
opened = collections.Counter(f["kind"] for f in rows if f["resolved_at"] is None)
resolved = sum(1 for f in rows if f["resolved_at"])
print(f"  guard {len(rows) - resolved:>5} open, {resolved:>4} resolved   " + ", ".join(f"{k} {v}" for k, v in sorted(opened.items())))
'
}

echo "== guard install (capture triggers + outbox)"
$BIN/guard install || exit $?
echo "== starting the stack: listener, watcher, worker, beat (logs in $RUN/)"
start worker $BIN/celery -A workers worker -Q events,alerts,sweeps --concurrency 2 -n "demo-$$@%h" --without-gossip --without-mingle --loglevel INFO
start beat $BIN/celery -A workers beat --schedule "$RUN/celerybeat-schedule" --loglevel INFO
start listener $BIN/python -m watchers.listener
start watcher $BIN/python -m watchers.uploads
start web $BIN/guard serve --port "${GUARD_WEB_PORT:-8077}"
echo "== status page: http://127.0.0.1:${GUARD_WEB_PORT:-8077}/ (metrics at /metrics, JSON at /api/status; log $RUN/web.log)"
$BIN/python -c 'from workers.app import app, SWEEPS; app.send_task("guard.sweep", args=["integrity"], queue=SWEEPS)'
echo "== the initial sweep opens the planted findings; the watcher asked for a files sweep"
for _ in $(seq 1 6); do sleep 2; summary; done
echo "== the simulated app writes good and bad rows and files for ${SIM_SECONDS}s, and repairs some"
start app $BIN/python -m examples.thulobazaar.app_sim --seconds "$SIM_SECONDS"
APP=$!
while kill -0 "$APP" 2>/dev/null; do
  sleep 4
  tail -n +1 "$RUN/app.log" 2>/dev/null | sed -n "$(( ${SEEN:-0} + 1 )),\$p"
  SEEN=$(wc -l < "$RUN/app.log")
  summary
done
sleep 3
echo "== final: the findings still open from the app's writes (the planted ones stay open too)"
$BIN/guard findings --open | grep -v -E 'integrity +ads\.slug|files +orphan_file +file:uploads/ads/ad-' | tail -n 15
summary
echo "== guard repair slugs --apply --no-backup: every slug that breaks a rule (planted or written by the app)"
echo "   gets <title>-<id>; old -> new links of malformed and shared ones in var/demo-redirects.csv"
$BIN/guard repair slugs --apply --no-backup --redirects var/demo-redirects.csv || exit $?
echo "== guard check integrity after the repair: the three slug rules find nothing now"
$BIN/guard check integrity --limit 0 | grep -E '^(CHECK|integrity|  ads\.slug)'
sleep 3
summary
if command -v rclone >/dev/null 2>&1; then
  echo "== the nightly chain now (beat runs it at BACKUP_CRON): backup -> copy to $BACKUP_REMOTES -> prune"
  $BIN/python -c 'from workers.app import app, SWEEPS; app.send_task("guard.nightly", queue=SWEEPS)'
  for _ in $(seq 1 60); do
    [ "$(grep -c 'guard.maintenance\[.*\] \(succeeded\|raised\)' "$RUN/worker.log")" -ge 4 ] && break
    grep -q 'MaintenanceFailed' "$RUN/worker.log" && break
    sleep 2
  done
  $BIN/guard backup list --remote "$BACKUP_REMOTES"
else
  echo "== rclone is not installed (apt-get install rclone): the nightly chain's copy step would fail"
fi
echo "== stopping the stack"
