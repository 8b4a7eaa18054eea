"""Where a bench's CPU goes: each process's (and thread's) CPU seconds between two samples, by role.

On two shared cores, CPU spent anywhere turns into queueing everywhere, so the latency bench says
which of its processes used how much: the bench's writer and finding poller (threads), the
listener, the worker's parent and its pool processes, their PostgreSQL backends (named by
application_name), PostgreSQL's own background processes and Redis (both shared with whatever else
runs on the machine), and the machine's total.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

TICK = os.sysconf("SC_CLK_TCK")
BACKENDS = """
SELECT pid, coalesce(nullif(application_name, ''), backend_type) FROM pg_stat_activity
WHERE datname = %s OR datname IS NULL
"""


def process_seconds(pid: int, tid: int | None = None) -> float:
    """User plus system CPU seconds of a process (or one of its threads); 0 once it is gone."""
    path = Path(f"/proc/{pid}/task/{tid}/stat") if tid else Path(f"/proc/{pid}/stat")
    try:
        fields = path.read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def named(comm: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def machine_seconds() -> float:
    """Busy CPU seconds of the whole machine (every core, every process) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / TICK


@dataclass
class CpuSample:
    """CPU seconds by role at one moment (a role's processes summed)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, role: str, value: float) -> None:
        self.seconds[role] = self.seconds.get(role, 0.0) + value


@dataclass
class CpuMeter:
    """Sample the bench's processes by role; `report` prints what each used in between."""

    server_url: str
    database: str
    threads: dict[str, int]  # role -> native thread id in this process
    processes: dict[str, int]  # role -> pid (a worker's pool processes are found as its children)

    def sample(self) -> CpuSample:
        sample = CpuSample()
        sample.add("bench process, all its threads", process_seconds(os.getpid()))
        for role, tid in self.threads.items():
            sample.add(f"bench {role} (thread)", process_seconds(os.getpid(), tid))
        for role, pid in self.processes.items():
            sample.add(role, process_seconds(pid))
            for child in children(pid):
                sample.add(f"{role}: pool processes", process_seconds(child))
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            backends = conn.execute(BACKENDS, (self.database,)).fetchall()
        for pid, name in backends:
            sample.add(f"postgres: {name}", process_seconds(int(pid)))
        for pid in named("redis-server"):
            sample.add("redis-server (shared)", process_seconds(pid))
        sample.add("machine, all processes", machine_seconds())
        return sample

    def report(self, before: CpuSample, after: CpuSample, wall: float, events: int) -> list[str]:
        """Lines of CPU used per role: seconds, share of one core, and milliseconds per event."""
        lines = []
        for role in _ordered(after.seconds):
            used = after.seconds[role] - before.seconds.get(role, 0.0)
            if used <= 0:
                continue
            per = f", {1000 * used / events:.2f} ms per write" if events else ""
            lines.append(f"  cpu {role}: {used:.2f} s ({100 * used / wall:.0f}% of a core){per}")
        return lines


def _ordered(roles: Iterable[str]) -> list[str]:
    return sorted(roles, key=lambda r: (r.startswith("machine"), r))
