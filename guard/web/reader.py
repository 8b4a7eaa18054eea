"""Readings kept for `web_cache_seconds`: however often Prometheus scrapes or people reload, the
database sees one light reading (and one page reading) per period, on one connection of its own."""

from __future__ import annotations

import threading
import time

from guard.config.settings import Settings
from guard.db.database import Database
from guard.web import readings
from guard.web.readings import Reading


class Reader:
    """Hand out the latest reading, taking a new one when the kept one is older than the period."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.period = float(settings.web_cache_seconds)
        self._db = Database(url, application_name="guard-serve")
        self._lock = threading.Lock()
        self._kept: dict[bool, tuple[float, Reading]] = {}

    def light(self) -> Reading:
        """The numbers the metrics need."""
        return self._get(full=False)

    def full(self) -> Reading:
        """The numbers plus the page's examples and chart."""
        return self._get(full=True)

    def _get(self, *, full: bool) -> Reading:
        with self._lock:  # one reading at a time on the one connection; others wait and reuse it
            kept = self._kept.get(full)
            if kept is not None and time.monotonic() - kept[0] < self.period:
                return kept[1]
            reading = readings.read(self._db, self.settings, full=full)
            self._kept[full] = (time.monotonic(), reading)
            if full:  # a page reading also answers the metrics for this period
                self._kept[False] = self._kept[True]
            return reading

    def close(self) -> None:
        with self._lock:
            self._db.close()
