"""Library code leaves the process alone, and a kill -9'd run's scratch database is swept an hour later."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import create_database, drop_database, url_for
from drift_support import rich_migrations, rich_template, rich_url, settings_for

from guard.backup.drill import run_drill
from guard.checks import CheckContext
from guard.checks import drift as drift_check
from guard.config.settings import Settings
from guard.db.database import Database
from guard.db.scratch import claim
from guard.schema import shadow as shadow_module
from guard.schema.shadow import shadow_database

# serial: it looks at every guard_* database on the server, so it runs after the parallel pass
pytestmark = [pytest.mark.integration, pytest.mark.serial]
__all__ = ["rich_migrations", "rich_template", "rich_url"]


def _blocked() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_the_shadow_leaves_the_sigterm_handler_and_the_signal_mask_alone(
    rich_template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, mask = signal.getsignal(signal.SIGTERM), _blocked()
    seen: list[tuple[object, set[int]]] = []
    real_drop = shadow_module.drop_database

    def drop_watched(name: str) -> object:
        seen.append((signal.getsignal(signal.SIGTERM), _blocked()))
        return real_drop(name)

    monkeypatch.setattr(shadow_module, "drop_database", drop_watched)
    with shadow_database(url_for(rich_template)):
        seen.append((signal.getsignal(signal.SIGTERM), _blocked()))
    assert seen == [(handler, mask), (handler, mask)]
    assert signal.getsignal(signal.SIGTERM) is handler and _blocked() == mask


def _name(prefix: str, age: timedelta) -> str:
    return f"{prefix}_{datetime.now(UTC) - age:%Y%m%d%H%M%S}_{secrets.token_hex(3)}"


@pytest.fixture
def leftovers() -> Iterator[dict[str, str]]:
    """Scratch-named databases: two stale, one fresh, two stale but in use, one stale not guard's."""
    names = {
        "stale_shadow": _name("guard_shadow", timedelta(hours=2)),
        "stale_drill": _name("guard_drill", timedelta(hours=1, minutes=5)),
        "fresh_shadow": _name("guard_shadow", timedelta(minutes=50)),
        "in_use": _name("guard_drill", timedelta(hours=3)),
        "claimed": _name("guard_shadow", timedelta(hours=3)),
        "not_ours": _name("guard_shadowx", timedelta(hours=5)),
    }
    for name in names.values():
        create_database(name)
    try:
        yield names
    finally:
        for name in names.values():
            drop_database(name)


@contextmanager
def _claimed(name: str) -> Iterator[None]:
    """Hold a run's claim on name from another database, as a long drill placing files does."""
    with Database(url_for("postgres")) as other:
        claim(other, name)
        yield


def _existing(names: dict[str, str]) -> set[str]:
    with Database(url_for("postgres")) as db:
        rows = db.fetch_all(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names.values()),)
        )
    found = {str(r[0]) for r in rows}
    return {key for key, name in names.items() if name in found}


def test_a_drift_check_drops_leftovers_older_than_an_hour_and_keeps_the_rest(
    leftovers: dict[str, str], rich_url: str, rich_migrations: Path
) -> None:
    with psycopg.connect(url_for(leftovers["in_use"])), _claimed(leftovers["claimed"]):
        result = drift_check.run(CheckContext(settings_for(rich_url, rich_migrations)))
        assert _existing(leftovers) == {"fresh_shadow", "in_use", "claimed", "not_ours"}
    assert result.ok, result.findings
    assert result.info["leftovers_dropped"] == 2


def test_a_drill_drops_leftovers_older_than_an_hour_and_keeps_the_rest(
    leftovers: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(url_for(leftovers["in_use"])), _claimed(leftovers["claimed"]):
        result = run_drill(Settings(database_url=db_url, backup_dir=tmp_path / "no-repository"))
        assert _existing(leftovers) == {"fresh_shadow", "in_use", "claimed", "not_ours"}
    assert not result.ok  # no repository to drill; the sweep ran anyway
