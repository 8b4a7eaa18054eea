"""The schema fingerprint: a cheap hash of what a restore changes, and the claim to act on a new one.

A restore of an old dump (incident 1) changes tables and columns, drops guard's capture triggers with
the tables they sat on, and brings back an older `_prisma_migrations`; a database dropped and
re-created also gets a new oid. The listener compares this hash every few seconds; a new value runs
the migration-history and drift checks at once, instead of at the daily sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

from guard.continuous.capture import SCHEMA, TRIGGER_NAMES
from guard.db.database import Database, load_query

# One listener acts on each new fingerprint: the conditional UPDATE's row count says which.
CLAIM = """
UPDATE guard.listener_state SET schema_fingerprint = %s, fingerprint_at = now()
WHERE schema_fingerprint IS DISTINCT FROM %s
"""


@dataclass(frozen=True)
class Fingerprint:
    """The hash, and whether guard's own bookkeeping tables exist (they are not part of the hash)."""

    value: str
    guard_present: bool


def read(db: Database) -> Fingerprint:
    """Hash the catalog (tables, columns, indexes, constraints, capture triggers) and the history."""
    params = {"guard_schema": SCHEMA, "guard_triggers": list(TRIGGER_NAMES)}
    row = db.fetch_one(load_query("schema_fingerprint"), params)
    assert row is not None
    value, guard_present, has_history = str(row[0]), bool(row[1]), bool(row[2])
    if has_history:
        history = db.fetch_one(load_query("schema_fingerprint_history"))
        value = f"{value}:{history[0] if history else ''}"
    return Fingerprint(value, guard_present)


def claim(db: Database, fingerprint: Fingerprint) -> bool:
    """Record this fingerprint as acted on; True for the one caller that changed it (run it in the
    transaction that sends the checks, so a failed send leaves the change to act on again)."""
    return db.execute(CLAIM, (fingerprint.value, fingerprint.value)) == 1
