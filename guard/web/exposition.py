"""The Prometheus metrics: a prometheus_client Collector that turns one Reading into metric families.

Names follow Prometheus' conventions (docs/practices/naming): the `incident_guard_` prefix, base
units (seconds, bytes), `_total` for counters, timestamps as gauges in seconds since the epoch. A
number guard has no source for yet (no backup repository, no heartbeats table) is left out rather
than reported as zero, so an alert on it never fires falsely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from guard.web.readings import CheckRun, Reading

P = "incident_guard_"
PREDEPLOY_VERDICTS = ("pass", "warn", "fail")


class ReadingCollector:
    """Collect from the reading `latest()` returns (cached by the caller), never querying on its own."""

    def __init__(self, latest: Callable[[], Reading]) -> None:
        self.latest = latest

    def collect(self) -> Iterable[Metric]:
        return families(self.latest())


def render(latest: Callable[[], Reading]) -> bytes:
    """Return the text exposition format of one reading."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadingCollector(latest))
    return generate_latest(registry)


def gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None) -> Iterator[Metric]:
    if value is None:
        return
    family = GaugeMetricFamily(P + name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    yield family


def families(r: Reading) -> Iterator[Metric]:
    yield from gauge("up", "1 when guard serve reached the database at its last reading", 1 if r.up else 0)
    if not r.up or not r.installed:
        return
    yield from _findings(r)
    yield from _checks(r)
    if r.outbox is not None:
        yield from gauge("outbox_backlog", "captured and outbox changes not yet checked", r.outbox.backlog)
        yield from gauge(
            "outbox_oldest_age_seconds",
            "age of the oldest unchecked change (0 when none)",
            r.outbox.oldest_age_s,
        )
        yield from gauge("outbox_dead", "changes parked after failing every check", r.outbox.dead)
    if r.queues is not None:
        depth = GaugeMetricFamily(P + "queue_depth", "tasks waiting in a broker queue", labels=["queue"])
        for queue, n in r.queues.items():
            depth.add_metric([queue], n)
        yield depth
    yield from _backups(r)
    yield from _liveness(r)
    if r.predeploy is not None:
        runs = CounterMetricFamily(P + "predeploy_runs", "predeploy runs by verdict", labels=["verdict"])
        for verdict in sorted({*PREDEPLOY_VERDICTS, *r.predeploy}):
            runs.add_metric([verdict], r.predeploy.get(verdict, 0))
        yield runs


def _findings(r: Reading) -> Iterator[Metric]:
    labels = ["check", "kind"]
    open_ = GaugeMetricFamily(P + "findings_open", "open findings (guard.findings)", labels=labels)
    opened = CounterMetricFamily(P + "findings_opened", "findings ever opened", labels=labels)
    resolved = CounterMetricFamily(P + "findings_resolved", "findings resolved", labels=labels)
    for f in r.findings:
        open_.add_metric([f.check, f.kind], f.open)
        opened.add_metric([f.check, f.kind], f.opened)
        resolved.add_metric([f.check, f.kind], f.resolved)
    yield from (open_, opened, resolved)
    yield from gauge(
        "pipeline_stalled", "1 when the pipeline_stalled finding is open", int(r.pipeline_stalled)
    )


def _checks(r: Reading) -> Iterator[Metric]:
    what: dict[str, tuple[str, Callable[[CheckRun], float | None]]] = {
        "last_run_timestamp_seconds": (
            "when the check's last sweep ended (either way)",
            lambda c: c.last_run,
        ),
        "last_success_timestamp_seconds": (
            "when the check's last successful sweep ended",
            lambda c: c.last_success,
        ),
        "duration_seconds": ("how long the check's last successful sweep took", lambda c: c.duration_s),
    }
    for suffix, (doc, value) in what.items():
        family = GaugeMetricFamily(f"{P}check_{suffix}", doc, labels=["check"])
        for run in r.checks:
            seconds = value(run)
            if seconds is not None:
                family.add_metric([run.check], seconds)
        yield family


def _backups(r: Reading) -> Iterator[Metric]:
    if r.backups:
        newest = next((b for b in r.backups if b.readable), None)
        if newest is not None:
            yield from gauge(
                "backup_newest_timestamp_seconds", "when the newest backup finished", newest.finished_at
            )
            yield from gauge(
                "backup_newest_size_bytes", "the newest backup's dump and files", newest.size_bytes
            )
            yield from gauge("backup_newest_files", "files in the newest backup", newest.files)
            yield from gauge(
                "backup_newest_verified",
                "1 when a restore drill of the newest backup passed",
                int(newest.verified),
            )
            # A backup is published only once complete: the newest readable one is the last success.
            yield from gauge(
                "backup_last_success_timestamp_seconds",
                "when the last complete backup finished",
                newest.finished_at,
            )
    if r.drill is not None:
        yield from gauge("drill_last_timestamp_seconds", "when the last restore drill ran", r.drill.at)
        yield from gauge("drill_last_success", "1 when the last restore drill passed", int(r.drill.ok))
        yield from gauge("drill_restore_seconds", "the last drill's restore time", r.drill.restore_s)


def _liveness(r: Reading) -> Iterator[Metric]:
    if r.canary is not None:
        yield from gauge("canary_latency_seconds", "latest canary: commit to worker seen", r.canary.latency_s)
        yield from gauge(
            "canary_last_seen_timestamp_seconds", "when a worker last saw a canary", r.canary.last_seen
        )
    if r.heartbeats is not None:
        beat = GaugeMetricFamily(
            P + "process_last_heartbeat_timestamp_seconds",
            "a process kind's newest heartbeat",
            labels=["process"],
        )
        for h in r.heartbeats:
            beat.add_metric([h.process], h.last_seen)
        yield beat


def names() -> tuple[str, ...]:
    """Every metric name guard serve can write (the contract the alert rules and dashboard use)."""
    return tuple(
        P + n
        for n in (
            "up",
            "findings_open",
            "findings_opened_total",
            "findings_resolved_total",
            "check_last_run_timestamp_seconds",
            "check_last_success_timestamp_seconds",
            "check_duration_seconds",
            "outbox_backlog",
            "outbox_oldest_age_seconds",
            "outbox_dead",
            "queue_depth",
            "backup_newest_timestamp_seconds",
            "backup_newest_size_bytes",
            "backup_newest_files",
            "backup_newest_verified",
            "backup_last_success_timestamp_seconds",
            "drill_last_timestamp_seconds",
            "drill_last_success",
            "drill_restore_seconds",
            "predeploy_runs_total",
            "canary_latency_seconds",
            "canary_last_seen_timestamp_seconds",
            "pipeline_stalled",
            "process_last_heartbeat_timestamp_seconds",
        )
    )
