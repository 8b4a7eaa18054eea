"""Progress bars on stderr for long sweeps, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, int | None], Progress]


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(label: str, total: int | None) -> Progress:
    return _Silent()


class Bar:
    """A one-line bar (or a counter when the total is unknown), redrawn at most ten times a second."""

    def __init__(self, label: str, total: int | None, stream: TextIO) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.done = 0
        self.started = self._drawn = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * 30)
            body = f"[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {self.done:,}/{self.total:,}"
        else:
            body = f"{self.done:,}"
        self.stream.write(f"\r{self.label:<8} {body} ({rate:,.0f}/s)\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def terminal_progress(stream: TextIO | None = None) -> ProgressFactory:
    """Return a factory that draws bars when the stream is a terminal, and nothing otherwise."""
    target = stream or sys.stderr
    if not target.isatty():
        return no_progress
    return lambda label, total: Bar(label, total, target)


class StepBars:
    """Adapt a `(step, done, total)` callback to one bar per step."""

    def __init__(self, factory: ProgressFactory) -> None:
        self.factory = factory
        self.bars: dict[str, tuple[Progress, list[int]]] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self.bars:
            self.bars[step] = (self.factory(step, total), [0])
        bar, seen = self.bars[step]
        bar.advance(done - seen[0])
        seen[0] = done

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.close()
