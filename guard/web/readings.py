"""One reading of what `guard serve` shows: guard's own tables, Redis queue lengths, the backup repository.

A reading is a frozen value taken in a few cheap queries, none of which touches a table of the app's:
the findings ledger, task runs, the outbox, heartbeats, canary and history all live in the `guard`
schema. Tables a later version of guard adds are looked up first (to_regclass), so an older install
simply has no such numbers rather than an error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from guard.config.redact import redact
from guard.config.settings import Settings
from guard.db.database import Database, load_query
from guard.errors import GuardError, UnreachableError
from guard.web.backlist import BackupSeen, DrillSeen, read_backups, read_drill

EXAMPLES_PER_KIND = 3
CHART_DAYS = 56
WEEKS_SHOWN = 2  # last week against this week
TRY_FOLD = "SELECT pg_try_advisory_xact_lock(hashtext('guard.finding_tally'))"


@dataclass(frozen=True)
class FindingCount:
    """Findings of one check and kind: open now, ever opened, resolved."""

    check: str
    kind: str
    open: int
    opened: int
    resolved: int


@dataclass(frozen=True)
class Example:
    """One open finding shown on the page (its subject and path are user content: escape them)."""

    check: str
    kind: str
    subject: str
    path: str | None
    message: str
    last_seen: float


@dataclass(frozen=True)
class CheckRun:
    """A check's sweeps as the workers recorded them."""

    check: str
    last_run: float | None
    last_success: float | None
    duration_s: float | None


@dataclass(frozen=True)
class Outbox:
    backlog: int
    oldest_age_s: float
    dead: int


@dataclass(frozen=True)
class ProcessBeat:
    """A process kind's newest heartbeat and how many instances have one."""

    process: str
    last_seen: float
    instances: int


@dataclass(frozen=True)
class Canary:
    last_seen: float | None
    latency_s: float | None
    last_sent: float | None


@dataclass(frozen=True)
class DayCount:
    day: date
    open: int


@dataclass(frozen=True)
class Reading:
    """Everything the metrics, the page and /api/status show, read at `taken_at`."""

    taken_at: float
    up: bool
    error: str | None = None
    installed: bool = False
    findings: tuple[FindingCount, ...] = ()
    checks: tuple[CheckRun, ...] = ()
    outbox: Outbox | None = None
    queues: dict[str, int] | None = None
    queues_error: str | None = None
    backups: tuple[BackupSeen, ...] | None = None  # None: no BACKUP_DIR
    drill: DrillSeen | None = None
    predeploy: dict[str, int] | None = None  # None: no history recorded yet
    canary: Canary | None = None
    heartbeats: tuple[ProcessBeat, ...] | None = None  # None: no heartbeats table yet
    stale_seconds: float = 15.0  # a heartbeat older than this is stale (HEARTBEAT_STALE_SECONDS)
    examples: tuple[Example, ...] = ()
    open_daily: tuple[DayCount, ...] = ()
    weekly: list[dict[str, Any]] | None = None  # None: no history table yet; oldest week first
    read_ms: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def open_total(self) -> int:
        return sum(f.open for f in self.findings)

    @property
    def pipeline_stalled(self) -> bool:
        return any(f.kind == "pipeline_stalled" and f.open for f in self.findings)

    def open_by_kind(self) -> list[tuple[str, str, int]]:
        """Return (check, kind, open) for every kind with open findings, most first."""
        rows = [(f.check, f.kind, f.open) for f in self.findings if f.open]
        return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["open_total"] = self.open_total
        data["pipeline_stalled"] = self.pipeline_stalled
        data["open_daily"] = [{"day": d.day.isoformat(), "open": d.open} for d in self.open_daily]
        return data


def read(db: Database, settings: Settings, *, full: bool) -> Reading:
    """Take one reading; `full` adds what only the page needs (examples, the chart, weekly numbers)."""
    started = time.perf_counter()
    try:
        reading = _read(db, settings, full=full)
    except (UnreachableError, GuardError) as exc:
        db.close()
        reading = Reading(taken_at=time.time(), up=False, error=scrub(str(exc), settings))
    except Exception as exc:  # a query error must show as "down", never as a 500 on /metrics
        db.close()
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        reading = Reading(taken_at=time.time(), up=False, error=scrub(why, settings))
    return _with_ms(reading, (time.perf_counter() - started) * 1000)


def _with_ms(reading: Reading, ms: float) -> Reading:
    return replace(reading, read_ms=round(ms, 2))


def _read(db: Database, settings: Settings, *, full: bool) -> Reading:
    row = db.fetch_one(load_query("web_tables"))
    assert row is not None
    has_findings, has_heartbeats, has_canary, has_history, has_runs, has_tally, has_forgotten = (
        bool(v) for v in row[:7]
    )
    now = float(row[7])
    if not has_findings:
        return Reading(taken_at=now, up=True, installed=False, notes=("guard is not installed",))
    if has_tally:  # since version 8; before it, the ledger itself is counted
        _fold_tally(db)
    findings = tuple(
        FindingCount(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]))
        for r in db.fetch_all(load_query("web_tally" if has_tally else "web_findings"))
    )
    checks: tuple[CheckRun, ...] = ()
    if has_history or has_runs:  # history since version 7 (every sweep); before it, the workers' task runs
        query = load_query("web_checks_history" if has_history else "web_checks")
        checks = tuple(CheckRun(str(r[0]), _f(r[1]), _f(r[2]), _f(r[3])) for r in db.fetch_all(query))
    o = db.fetch_one(load_query("web_outbox"))
    assert o is not None
    outbox = Outbox(int(o[0]), max(0.0, float(o[1])), int(o[2]))
    if has_canary:  # changes a stopped listener never collected are as old as the oldest canary among them
        age = db.fetch_one(load_query("web_capture_age"))
        if age is not None and float(age[0]) > outbox.oldest_age_s:
            outbox = replace(outbox, oldest_age_s=float(age[0]))
    heartbeats = None
    if has_heartbeats:
        heartbeats = tuple(
            ProcessBeat(str(r[0]), float(r[1]), int(r[2])) for r in db.fetch_all(load_query("web_heartbeats"))
        )
    canary = None
    if has_canary:
        c = db.fetch_one(load_query("web_canary"))
        canary = Canary(_f(c[0]), _f(c[1]), _f(c[2])) if c is not None else None
    predeploy = None
    if has_history:
        query = load_query("web_predeploy" if has_forgotten else "web_predeploy_v7")  # forgotten: since 9
        predeploy = {str(r[0]): int(r[1]) for r in db.fetch_all(query)}
    queues, queues_error = _queues(settings)
    backups, drill = read_backups(settings), read_drill(settings)
    # Text from files on disk (a drill's detail, why a manifest cannot be read) is scrubbed like errors.
    if backups is not None:
        backups = tuple(replace(b, problem=scrub(b.problem, settings)) if b.problem else b for b in backups)
    drill = replace(drill, detail=scrub(drill.detail, settings)) if drill is not None else None
    reading = Reading(
        taken_at=now,
        up=True,
        installed=True,
        findings=findings,
        checks=checks,
        outbox=outbox,
        queues=queues,
        queues_error=queues_error,
        backups=backups,
        drill=drill,
        predeploy=predeploy,
        canary=canary,
        heartbeats=heartbeats,
        stale_seconds=float(settings.heartbeat_stale_seconds),
    )
    if not full:
        return reading
    return replace(
        reading,
        examples=_examples(db, settings),
        open_daily=_open_daily(db, now),
        weekly=_weekly(db, settings) if has_history else None,
    )


def _fold_tally(db: Database) -> None:
    """Fold the tally's appended rows into it (one server at a time); reading works either way."""
    try:
        with db.transaction():
            row = db.fetch_one(TRY_FOLD)
            if row is not None and row[0]:
                db.execute(load_query("web_tally_fold"))
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction):
        pass  # a read-only role or a standby: the log is added up at each reading instead


def _weekly(db: Database, settings: Settings) -> list[dict[str, Any]]:
    """Last week and this week's five numbers (guard.history.weekly, as `guard report` computes them)."""
    from guard.history.weekly import expects_daily_backups, weekly_numbers

    shown = []
    for week in weekly_numbers(db, WEEKS_SHOWN, daily_backups=expects_daily_backups(settings)):
        document = week.to_json()
        for number in week.numbers:
            document["numbers"][number.name]["shown"] = number.shown()
        shown.append(document)
    return shown


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _queues(settings: Settings) -> tuple[dict[str, int] | None, str | None]:
    """Each broker queue's length (LLEN of its lists), or why Redis could not say."""
    from guard.continuous import queues

    try:
        client = queues.connect(settings.redis_url)
        try:
            return queues.depths(client, settings.broker_prefix).waiting, None
        finally:
            client.close()
    except UnreachableError as exc:
        return None, scrub(str(exc), settings)


def _examples(db: Database, settings: Settings) -> tuple[Example, ...]:
    rows = db.fetch_all(load_query("web_examples"), {"per_kind": EXAMPLES_PER_KIND})
    return tuple(
        Example(
            str(r[0]),
            str(r[1]),
            scrub(str(r[2]), settings),
            None if r[3] is None else scrub(str(r[3]), settings),
            scrub(str(r[4]), settings),
            float(r[5]),
        )
        for r in rows
    )


def _open_daily(db: Database, now: float) -> tuple[DayCount, ...]:
    """Open findings at the end of each of the last CHART_DAYS UTC days (today: now)."""
    today = datetime.fromtimestamp(now, UTC).date()
    first = today - timedelta(days=CHART_DAYS - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    before, opened, resolved = 0, {}, {}
    for kind, day, count in db.fetch_all(load_query("web_open_daily"), {"since": since}):
        if kind == "before":
            before = int(count)
        elif kind == "opened":
            opened[day] = int(count)
        else:
            resolved[day] = int(count)
    days, running = [], before
    for i in range(CHART_DAYS):
        day = first + timedelta(days=i)
        running += opened.get(day, 0) - resolved.get(day, 0)
        days.append(DayCount(day, running))
    return tuple(days)


def scrub(text: str, settings: Settings) -> str:
    """Remove every configured secret (and any URL password) from text bound for a page or a metric."""
    text = redact(text)
    for secret in settings.secret_values():
        if secret:
            text = text.replace(secret, "***")
    return text
