#!/usr/bin/env bash
# `make run`: build a demo world with planted incidents on the local Postgres, run every check on it,
# then start the continuous-sync stack (listener, watcher, worker, beat) while a simulated app writes
# good and bad rows and files, showing findings open and resolve. Bounded; cleans up after itself.
set -u
BIN=.venv/bin
DB=${GUARD_DEMO_DB:-guard_demo}
UPLOADS=${GUARD_DEMO_UPLOADS:-var/demo}
ADS=${GUARD_DEMO_ADS:-2000}
mkdir -p var
echo "== building a demo world: $ADS ads, 2% of each incident planted (database $DB, uploads $UPLOADS)"
$BIN/guard demo --ads "$ADS" --bad 0.02 --db "$DB" --uploads "$UPLOADS" > var/demo-truth.json || exit $?
echo "== planted (ground truth, var/demo-truth.json):"
$BIN/python -c 'import json,sys; t=json.load(open("var/demo-truth.json")); [print(f"   {k:<32}{v}") for k,v in {**t["integrity"], **t["files_check"]}.items()]'
export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$DB" UPLOADS_ROOT="$UPLOADS"
export MIGRATIONS_DIR=${MIGRATIONS_DIR:-examples/thulobazaar/prisma/migrations}
echo "== guard check all"
$BIN/guard check all --limit 3
code=$?
echo "== exit code $code (1 = findings, as planted)"
[ "$code" -le 1 ] || exit "$code"
exec scripts/run-stack.sh
