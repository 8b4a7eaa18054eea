"""Which databases are guard's stale scratch: read from the name alone, never a stranger's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from guard.db.scratch import created_at, scratch_database_name, stale

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def test_a_name_carries_its_creation_time() -> None:
    name = scratch_database_name("guard_shadow")
    created = created_at(name)
    assert created is not None and abs(datetime.now(UTC) - created) < timedelta(minutes=1)


def test_only_our_stale_names_are_stale() -> None:
    names = [
        "guard_shadow_20260102105959_a1b2c3",  # 1 h 1 s old
        "guard_drill_20260102100000_a1b2c3",
        "guard_shadow_20260102110001_a1b2c3",  # 59 min old
        "guard_restore_20260101000000_a1b2c3",  # kept for the operator
        "guard_shadow_0123456789abcdef",  # no time in the name: unknown age
        "guard_shadow_20261399000000_a1b2c3",  # not a date
        "guard_shadow_extra_20260101000000_a1b2c3",
        "app_20260101000000_a1b2c3",
        "guard_shadow_20260101000000_a1b2c3; DROP",
    ]
    assert stale(names, NOW) == ["guard_shadow_20260102105959_a1b2c3", "guard_drill_20260102100000_a1b2c3"]


def test_the_sweep_follows_configured_prefixes_and_never_a_restores() -> None:
    names = [
        "shop_drill_20260102100000_a1b2c3",
        "guard_drill_20260102100000_a1b2c3",  # the default prefix is no longer ours once one is set
        "shop_restore_20260101000000_a1b2c3",
        "ops2_shadow_20260102100000_a1b2c3",
    ]
    swept = stale(names, NOW, prefixes=("ops2_shadow", "shop_drill"))
    assert swept == ["shop_drill_20260102100000_a1b2c3", "ops2_shadow_20260102100000_a1b2c3"]
