"""Progress bars drawn with rich on stderr, only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from guard.progress import Progress, ProgressFactory, no_progress

if TYPE_CHECKING:
    import rich.progress


def terminal_progress(stream: TextIO | None = None) -> ProgressFactory:
    """Return a factory that draws bars when the stream is a terminal, and nothing otherwise."""
    target = stream or sys.stderr
    if not target.isatty():
        return no_progress
    return Bars(target)


class Bars:
    """Every bar of one command in one rich display (rich allows one live display at a time)."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        # No refresh thread: the checks fork walkers, and we redraw from advance() at most 10 times a second.
        self.display = RichProgress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream, highlight=False),
            auto_refresh=False,
            transient=True,
        )
        self.open = 0
        self.drawn = 0.0

    def __call__(self, label: str, total: int | None) -> Progress:
        if self.open == 0:
            self.display.start()
        self.open += 1
        return _Bar(self, self.display.add_task(label, total=total))

    def advance(self, task: rich.progress.TaskID, n: int) -> None:
        self.display.advance(task, n)
        now = time.monotonic()
        if now - self.drawn >= 0.1:
            self.drawn = now
            self.display.refresh()

    def finish(self, task: rich.progress.TaskID) -> None:
        self.display.remove_task(task)
        self.open -= 1
        if self.open == 0:
            self.display.stop()


class _Bar:
    def __init__(self, bars: Bars, task: rich.progress.TaskID) -> None:
        self.bars, self.task, self.closed = bars, task, False

    def advance(self, n: int = 1) -> None:
        self.bars.advance(self.task, n)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bars.finish(self.task)


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
