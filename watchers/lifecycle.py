"""What every long-running loop shares: a flag set by SIGTERM, a reconnect backoff, one-line logging."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from guard.config.redact import redact
from guard.config.settings import Settings, load_settings
from guard.errors import GuardError
from watchers.transient import TRANSIENT

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0


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

    def sleep(self, seconds: float) -> None:
        """Sleep like time.sleep, but wake at once when stopping (tenacity's `sleep=`)."""
        self._event.wait(seconds)


def retrying(stop: StopFlag, log: logging.Logger, trouble: str) -> Retrying:
    """Retry on connection trouble with capped, jittered backoff until it works or the flag is set.

    Once stopped, the call gives up quietly and returns None (retry_error_callback): a SIGTERM during
    an outage is a clean stop, not an error.
    """

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        log.warning("%s (%s); retrying in %.1fs", trouble, redact(str(error)).strip(), delay)

    return Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_random_exponential(multiplier=FIRST_DELAY_S, max=MAX_DELAY_S),
        stop=lambda state: bool(stop),
        sleep=stop.sleep,
        before_sleep=warn,
        retry_error_callback=lambda state: None,
    )


def setup_logging(name: str) -> logging.Logger:
    """Log one line per event to stderr, named after the process."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    return logging.getLogger(name)


def run_process(name: str, serve: Callable[[Settings, StopFlag], None]) -> int:
    """Load settings from guard/config, serve until SIGTERM; a bad setting is one line and exit 2."""
    log = setup_logging(name)
    try:
        settings = load_settings()
        stop = StopFlag().install()
        serve(settings, stop)
    except GuardError as exc:
        log.error("%s", redact(str(exc)))
        return exc.exit_code
    log.info("stopped")
    return 0
