"""Health: the database answers, how fast, and the uploads root can be read."""

from __future__ import annotations

import time

from guard.checks import CheckContext
from guard.db.database import Database
from guard.errors import UnreachableError
from guard.findings.finding import CheckResult, Finding, FindingSink
from guard.fs.root import UploadsRoot

CHECK = "health"
KINDS = ("database_unreachable", "uploads_unreadable")


def run(ctx: CheckContext) -> CheckResult:
    """Ping the database and open the uploads root; report each failure as a finding."""
    started = time.perf_counter()
    sink = FindingSink(CHECK, ctx.limit, KINDS)
    info: dict[str, object] = {}
    url = ctx.settings.require_database_url()
    root = ctx.settings.require_uploads_root()
    try:
        with Database(url) as db:
            version, rtt = db.ping()
        info.update(server_version=version, round_trip_ms=round(rtt * 1000, 2))
    except UnreachableError as exc:
        sink.add(Finding(CHECK, "database_unreachable", "database", str(exc)))
    try:
        if not UploadsRoot(root).readable():
            raise UnreachableError(f"uploads root {root} is not readable")
        info["uploads_root"] = str(root)
    except UnreachableError as exc:
        sink.add(Finding(CHECK, "uploads_unreadable", f"folder:{root}", str(exc), path=str(root)))
    result = sink.result(time.perf_counter() - started, info)
    return result
