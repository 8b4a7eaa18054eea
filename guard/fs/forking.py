"""When this process may fork a helper child: the one rule for every forked walk.

A child gets a copy of every lock in whatever state another thread left it (the import lock, a
logging handler's lock, sentry-sdk's transport queue), and only the forking thread runs in it; one
that was held at the fork stays held forever. So a walk forks only while this is the only thread,
and otherwise does the same work in this process (same results, one core). In a Celery prefork
worker, sentry-sdk's transport thread starts with the first event it sends, so a task may go either
way; both are correct.
"""

from __future__ import annotations

import os
import threading


def fork_is_safe() -> bool:
    """Whether a fork here leaves the child no lock that another thread may hold."""
    return hasattr(os, "fork") and threading.active_count() == 1
