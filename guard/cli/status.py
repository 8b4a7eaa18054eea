"""`guard status`: is guard itself running and keeping up? Processes, canary, outbox, queues, backups,
findings."""

from __future__ import annotations

import argparse
import json
from typing import Any

from guard.config.settings import Settings
from guard.continuous import canary, liveness, outbox
from guard.continuous.capture import VERSION, installed_version, missing_capture
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, EXIT_UNREACHABLE, ConfigError, GuardError, UnreachableError
from guard.findings import acks as known
from guard.findings import ledger as store
from guard.fs.paths import printable
from guard.plural import plural

OPEN = "SELECT id, check_name, kind, subject FROM guard.findings WHERE resolved_at IS NULL ORDER BY id"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add status to the guard command."""
    status = commands.add_parser(
        "status",
        help="is guard running, keeping up, backed up; what is open",
        description="Show guard's own health and the continuous checks' state: each process's "
        "heartbeat (listener, watcher, workers, beat: alive, stale after HEARTBEAT_STALE_SECONDS, or "
        "missing), the canary's last trip through the pipeline and whether it stalled "
        "(CANARY_STALL_SECONDS), database changes captured but not yet checked (the outbox), tasks "
        "waiting in each broker queue and tasks a worker holds, the newest backup and the last "
        "restore drill (when BACKUP_DIR is set), the open findings per check, and the changes parked "
        "after failing every check (re-queue them with 'guard outbox requeue'). A waiting count that "
        "keeps growing means: run more workers (Procfile: worker) or more listeners.",
        epilog="examples:\n  guard status\n  guard status --json\n\n"
        "exit codes: 0 all running and nothing open, 1 findings open (not acknowledged), "
        "2 guard not installed (or an older version: run 'guard install'), 3 guard itself is not "
        "working: a process is missing or stale, the pipeline is stalled, or the database or Redis "
        "cannot be reached",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: redis costs every other guard command ~45 ms of start-up it never uses.
    from guard.continuous import queues

    with Database(settings.require_database_url()) as db:
        version = installed_version(db)
        if version is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
        if version < VERSION:
            raise ConfigError(
                f"guard's schema here is version {version}, this guard reads version {VERSION}: "
                "run 'guard install' to upgrade it"
            )
        backlog = outbox.backlog(db)
        dead = outbox.dead_rows(db)
        opened = db.fetch_all(OPEN)
        acks = known.active(db)
        blind = [f.subject for f in missing_capture(db, settings)]
        now = store.clock_now(db)
        expected = [p for p in liveness.PROCESSES if p != liveness.WATCHER or settings.uploads_root]
        processes = liveness.judge(
            liveness.read_heartbeats(db), now, settings.heartbeat_stale_seconds, expected
        )
        last_canary = canary.latest_canary(db)
        flow = canary.stall(db, settings.canary_stall_seconds)
        backups = _backups(settings)
    open_by_check: dict[str, int] = {}
    acked_by_check: dict[str, int] = {}
    for _, check, kind, subject in opened:
        open_by_check[str(check)] = open_by_check.get(str(check), 0) + 1
        if known.covering(acks, str(check), str(kind), str(subject)) is not None:
            acked_by_check[str(check)] = acked_by_check.get(str(check), 0) + 1
    broker: dict[str, Any]
    try:
        depths = queues.depths(queues.connect(settings.redis_url), settings.broker_prefix)
        broker = {"reachable": True, **depths.to_json()}
    except UnreachableError as exc:
        broker = {"reachable": False, "error": str(exc)}
    problems = [f"{p.process} {p.state}" for p in processes if p.problem]
    if flow.stalled:
        problems.append("pipeline stalled")
    if not broker["reachable"]:
        problems.append("broker unreachable")
    report = {
        "installed_version": version,
        "healthy": not problems,
        "problems": problems,
        "processes": [p.to_json() for p in processes],
        "canary": {
            "last": last_canary.to_json() if last_canary else None,
            "stall_after_s": settings.canary_stall_seconds,
            **flow.to_json(),
        },
        "backups": backups,
        "outbox_waiting": backlog,
        "outbox_dead": [d.to_json() for d in dead],
        "broker": broker,
        "open_findings": open_by_check,
        "acknowledged_findings": acked_by_check,
        "capture_missing": blind,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(render(report))
    if not broker["reachable"] or problems:
        return EXIT_UNREACHABLE
    blocking = sum(open_by_check.values()) - sum(acked_by_check.values())
    return EXIT_FINDINGS if blocking else EXIT_OK


def render(report: dict[str, Any]) -> str:
    broker = report["broker"]
    if broker["reachable"]:
        waiting = ", ".join(f"{q} {n}" for q, n in broker["waiting"].items())
        queue_line = f"{waiting} waiting; {broker['unacknowledged']} held by workers"
    else:
        queue_line = f"unknown ({broker['error']})"
    found = report["open_findings"]
    findings_line = (
        f"{sum(found.values())} open (" + ", ".join(f"{c} {n}" for c, n in found.items()) + ")"
        if found
        else "none open"
    )
    acked = report["acknowledged_findings"]
    if acked:
        findings_line += (
            f"; {sum(acked.values())} of them acknowledged (guard findings shows who, why, until)"
        )
    blind = report["capture_missing"]
    capture_line = (
        f"MISSING on {', '.join(blind)}: their changes are not checked until 'guard install'"
        if blind
        else "triggers in place"
    )
    return "\n".join(
        [
            f"installed  guard schema version {report['installed_version']}",
            *_process_lines(report["processes"]),
            _canary_line(report["canary"]),
            f"capture    {capture_line}",
            f"outbox     {report['outbox_waiting']} captured changes not yet checked",
            *_dead_lines(report["outbox_dead"]),
            f"queues     {queue_line}",
            *_backup_lines(report["backups"]),
            f"findings   {findings_line}",
        ]
    )


def _backups(settings: Settings) -> dict[str, Any]:
    """The newest backup and the last drill, or why they cannot be told (never fatal to status)."""
    from guard.backup.record import last_drill, newest_backup
    from guard.backup.source import configured_source

    if settings.backup_dir is None:
        return {"configured": False}
    try:
        wanted = configured_source(settings.require_database_url())
        newest = newest_backup(settings.backup_dir, wanted)
        drill = last_drill(settings.backup_dir)
    except GuardError as exc:
        return {"configured": True, "error": str(exc)}
    return {"configured": True, "newest": newest.to_json() if newest else None, "last_drill": drill}


def _process_lines(processes: list[dict[str, Any]]) -> list[str]:
    """One line per process kind: its instances with their state and heartbeat age."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for p in processes:
        by_kind.setdefault(p["process"], []).append(p)
    lines = []
    for kind, items in by_kind.items():
        parts = []
        for p in items:
            if p["state"] == "missing":
                parts.append("MISSING: no heartbeat recorded (is it running?)")
                continue
            where = printable(f"{p['instance']} pid {p['pid']}")
            state = "alive" if p["alive"] else "STALE"
            parts.append(f"{state} {where}, heartbeat {p['age_s']:.0f} s ago")
        lines.append(f"{kind:<10} {'; '.join(parts)}")
    return lines


def _canary_line(info: dict[str, Any]) -> str:
    last = info["last"]
    if last is None:
        return "canary     none sent yet (beat sends one every CANARY_SECONDS)"
    if last["latency_s"] is None:
        trip = f"none came through yet (the first waits since {last['sent_at']})"
    else:
        trip = f"last latency {last['latency_s']:.2f} s, seen {last['seen_at']}"
    if info["stalled"]:
        return f"canary     STALLED: nothing came through for {info['quiet_s']:.0f} s; {trip}"
    return f"canary     {trip}"


def _backup_lines(info: dict[str, Any]) -> list[str]:
    if not info["configured"]:
        return ["backups    not configured (BACKUP_DIR is not set)"]
    if "error" in info:
        return [f"backups    unknown ({info['error']})"]
    newest = info["newest"]
    if newest is None:
        backup = "backups    none of this database yet"
    elif newest["problem"]:
        backup = f"backups    newest {newest['id']} CANNOT BE READ: {newest['problem']}"
    else:
        state = (
            "consistent"
            if newest["consistent"]
            else f"NOT CONSISTENT: {plural(newest['missing'], 'referenced path')} not in it"
        )
        size = f"{plural(newest['bytes'] or 0, 'byte')}, {plural(newest['files'] or 0, 'file')}"
        backup = f"backups    newest {newest['id']} finished {newest['finished_at']}, {size}, {state}"
    drill = info["last_drill"]
    if drill is None:
        drill_line = "drill      none recorded (guard restore drill)"
    else:
        verdict = "passed" if drill.get("ok") else "FAILED"
        drill_line = (
            f"drill      {verdict} at {drill.get('at')}, backup {drill.get('backup')}, "
            f"restore {drill.get('restore_s')} s: {printable(str(drill.get('detail', '')))[:160]}"
        )
    return [backup, drill_line]


def _dead_lines(dead: list[dict[str, Any]]) -> list[str]:
    """One line per parked change, and how to put them back."""
    if not dead:
        return []
    lines = [f"dead       {len(dead)} parked after failing every check (guard outbox requeue ID|--all):"]
    for row in dead:
        why = printable(str(row["last_error"] or "no error recorded"))[:120]
        lines.append(f"  {row['id']:>8}  {row['table']} {printable(row['key'])}  {row['attempts']}x: {why}")
    return lines
