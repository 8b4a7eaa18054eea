"""The uploads watcher's pure pieces: temporary names, snapshot differences, settling."""

from __future__ import annotations

import time

from watchers.uploads import Pending, diff, is_temporary


def test_temporary_and_half_written_names_are_ignored() -> None:
    for name in (
        "uploads/ads/.x.webp",
        "uploads/ads/a.webp.part",
        "uploads/ads/a.tmp",
        "uploads/ads/a.crdownload",
        "uploads/ads/~a.webp",
        "uploads/ads/a.webp~",
    ):
        assert is_temporary(name), name
    assert not is_temporary("uploads/ads/a.webp")
    assert not is_temporary("uploads/.ads/a.webp")


def test_diff_reports_added_removed_and_changed_paths() -> None:
    old = {"a": (1.0, 3), "b": (1.0, 3), "c": (1.0, 3)}
    new = {"a": (1.0, 3), "b": (2.0, 3), "d": (1.0, 1)}
    assert diff(old, new) == ["b", "c", "d"]


def test_pending_hands_out_only_settled_paths_and_skips_temporary_ones() -> None:
    pending = Pending()
    pending.add(["uploads/ads/a.webp", "uploads/ads/b.part"])
    assert pending.settled(quiet=60) == []
    time.sleep(0.05)
    assert pending.settled(quiet=0.01) == ["uploads/ads/a.webp"]
    assert len(pending) == 0
