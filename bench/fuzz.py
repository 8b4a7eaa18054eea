"""Fuzz the pure functions that read hostile input, each against its contract, for a set time.

Run: .venv/bin/python -m bench.fuzz --seconds 60 [--target NAME]   (or `make fuzz`; not in `make test`)

Each target draws inputs with Hypothesis and asserts the function's contract: it returns a valid
value or raises the project's documented error (a GuardError), never another exception; a path judged
safe never leaves the root; a damaged manifest or pack index is never read as if it were intact.
A failure prints Hypothesis's smallest falsifying example; record it in bench/RESULTS.md and turn it
into a unit test in tests/unit.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings

from bench.fuzz_targets import TARGETS, Target

CHUNK = 200  # examples per Hypothesis run; runs repeat, each with a fresh seed, until time is up


@dataclass(frozen=True)
class Outcome:
    """How long one target ran, how many inputs it tried, and the first contract it saw broken."""

    name: str
    seconds: float
    examples: int
    failure: str | None


def fuzz(target: Target, seconds: float) -> Outcome:
    """Run one target until its time is up or it finds a broken contract (then shrink and stop)."""
    tried = [0]

    def body(value: object) -> None:
        tried[0] += 1
        target.check(value)

    run = settings(
        max_examples=CHUNK,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )(given(target.strategy)(body))
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            run()
        except Exception as exc:  # the broken contract, with Hypothesis's falsifying example in its notes
            notes = "\n".join(getattr(exc, "__notes__", []))
            return Outcome(target.name, time.monotonic() - started, tried[0], f"{exc!r}\n{notes}")
    return Outcome(target.name, time.monotonic() - started, tried[0], None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append", help="only these (repeatable)")
    args = parser.parse_args(argv)
    found = 0
    for name in args.target or list(TARGETS):
        outcome = fuzz(TARGETS[name], args.seconds)
        verdict = "no contract broken" if outcome.failure is None else "FOUND"
        print(f"{name:<10} {outcome.seconds:6.1f} s {outcome.examples:>9,} examples  {verdict}", flush=True)
        if outcome.failure is not None:
            found += 1
            print(outcome.failure, flush=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
