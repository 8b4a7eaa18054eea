"""What every long-running loop shares: a flag set by SIGTERM, a backoff, and one-line logging."""

from __future__ import annotations

import logging
import random
import signal
import threading
from types import FrameType


class StopFlag:
    """Set by SIGTERM or SIGINT; the handler only sets the flag, the loop does the stopping."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> StopFlag:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True at once if stopping."""
        return self._event.wait(seconds)


class Backoff:
    """Exponential delays with jitter between reconnection attempts, capped."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap = first, cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)


def setup_logging(name: str) -> logging.Logger:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    return logging.getLogger(name)
