"""Deliver queued notices to each transport; a failing channel keeps its notices for the next run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from psycopg import sql
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from guard.alerts import Notice, Transport, TransportError
from guard.config.redact import redact
from guard.db.database import Database, load_query

log = logging.getLogger(__name__)

BATCH = 500
ATTEMPTS = 3  # per run; what still fails stays queued for the next run (the beat's next tick)
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(%s))"
TOO_SOON = """
SELECT EXISTS (SELECT 1 FROM guard.alert_state
               WHERE name = %s AND sent_at > now() - make_interval(secs => %s))
"""
REMEMBER = """
INSERT INTO guard.alert_state (name, sent_at) VALUES (%s, now())
ON CONFLICT (name) DO UPDATE SET sent_at = EXCLUDED.sent_at
"""
MARK_SENT = "UPDATE guard.notifications SET {column} = now() WHERE id = ANY(%s)"


def deliver(db: Database, channels: Sequence[Transport]) -> dict[str, int]:
    """Send what each channel has not sent yet; return how many notices each one took."""
    sent = {}
    for channel in channels:
        try:
            sent[channel.name] = deliver_one(db, channel)
        except TransportError as exc:
            log.warning("alerts: %s unreachable, will retry: %s", channel.name, redact(str(exc)))
            sent[channel.name] = 0
    return sent


def deliver_one(db: Database, channel: Transport) -> int:
    """Claim, send and mark one batch for one channel, all in one transaction."""
    with db.transaction():
        if channel.min_interval and not _may_speak(db, channel):
            return 0
        notices = claim(db, channel)
        if not notices:
            return 0
        _notify(channel, notices)
        db.execute(
            sql.SQL(MARK_SENT).format(column=sql.Identifier(channel.column)),
            ([n.id for n in notices],),
        )
        if channel.min_interval:
            db.execute(REMEMBER, (channel.name,))
    return len(notices)


def _notify(channel: Transport, notices: Sequence[Notice]) -> None:
    """Hand the notices to the channel, retrying a failure twice with a short backoff."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransportError),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=2),
        reraise=True,
    )
    retrying(channel.notify, notices)


def claim(db: Database, channel: Transport) -> list[Notice]:
    query = sql.SQL(load_query("alerts_claim")).format(column=sql.Identifier(channel.column))
    rows = db.fetch_all(query, {"events": list(channel.events), "limit": BATCH})
    return [Notice.from_row(r) for r in rows]


def _may_speak(db: Database, channel: Transport) -> bool:
    """Allow one sender at a time and at most one message per min_interval."""
    locked = db.fetch_one(TRY_LOCK, (f"guard.alerts.{channel.name}",))
    if not locked or not locked[0]:
        return False
    recent = db.fetch_one(TOO_SOON, (channel.name, channel.min_interval))
    return not (recent and recent[0])
