"""Findings that live: opened by failing checks, refreshed, resolved by passing ones; idempotent."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.continuous.process import process_paths, process_rows, run_sweep
from guard.db.database import Database
from guard.errors import ConfigError
from guard.findings import ledger as store

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    s = Settings(database_url=db_url, uploads_root=tmp_path, orphan_grace=600)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', 'ok-5', 1, 1)")
        install(db, s)
    return s


def _open(settings: Settings) -> list[tuple[str, str, str]]:
    with Database(settings.require_database_url()) as db:
        return [(f.check, f.kind, f.subject) for f in store.list_findings(db, open_only=True)]


def _notifications(settings: Settings) -> list[str]:
    with Database(settings.require_database_url()) as db:
        return [str(r[0]) for r in db.fetch_all("SELECT event FROM guard.notifications ORDER BY id")]


def _write_file(settings: Settings, rel: str, age: float = 0) -> None:
    path = Path(settings.require_uploads_root()) / rel
    path.write_bytes(b"img")
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))


def test_invalid_slug_opens_and_fixing_it_resolves(settings: Settings) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = 'Bad Slug' WHERE id = 5")
    process_rows(settings, "ads", ["5"])
    assert _open(settings) == [("integrity", "ads.slug.format", "ads:5")]
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = 'good-5' WHERE id = 5")
    outcome = process_rows(settings, "ads", ["5"])
    assert outcome.changes.resolved == 1 and _open(settings) == []
    assert _notifications(settings) == ["opened", "resolved"]


def test_duplicate_delivery_opens_one_finding_and_one_notification(settings: Settings) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = NULL WHERE id = 5")
    first = process_rows(settings, "ads", ["5"], outbox_ids=[1])
    second = process_rows(settings, "ads", ["5"], outbox_ids=[1])
    assert (first.changes.opened, second.changes.opened, second.changes.refreshed) == (1, 0, 1)
    with Database(settings.require_database_url()) as db:
        found = store.list_findings(db)
    assert len(found) == 1 and found[0].occurrences == 2
    assert _notifications(settings) == ["opened"]


def test_deleted_row_is_a_no_op(settings: Settings) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = 'Bad' WHERE id = 5")
        db.execute("DELETE FROM ads WHERE id = 5")
    outcome = process_rows(settings, "ads", ["5"])
    assert outcome.changes == store.Changes() and _open(settings) == []


def test_deleted_file_becomes_missing_file_and_coming_back_resolves(settings: Settings) -> None:
    rel = "uploads/ads/a.webp"
    _write_file(settings, rel)
    with Database(settings.require_database_url()) as db:
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (9, 5, 'a', %s)", (rel,))
    process_rows(settings, "ad_images", ["9"], [rel])
    assert _open(settings) == []
    (Path(settings.require_uploads_root()) / rel).unlink()
    process_paths(settings, [rel])
    assert _open(settings) == [("files", "missing_file", "ad_images:9")]
    _write_file(settings, rel)
    process_paths(settings, [rel])
    assert _open(settings) == []


def test_upload_then_row_within_grace_opens_nothing(settings: Settings) -> None:
    rel = "uploads/ads/new.webp"
    _write_file(settings, rel)
    outcome = process_paths(settings, [rel])
    assert _open(settings) == [] and rel in outcome.recheck
    with Database(settings.require_database_url()) as db:
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (3, 5, 'n', %s)", (rel,))
    process_rows(settings, "ad_images", ["3"], [rel])
    assert process_paths(settings, [rel]).recheck == {}
    assert _open(settings) == []


def test_unreferenced_file_past_grace_is_an_orphan_until_a_row_names_it(settings: Settings) -> None:
    rel = "uploads/ads/old.webp"
    _write_file(settings, rel, age=3600)
    process_paths(settings, [rel])
    assert _open(settings) == [("files", "orphan_file", f"file:{rel}")]
    with Database(settings.require_database_url()) as db:
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (4, 5, 'o', %s)", (rel,))
    process_rows(settings, "ad_images", ["4"], [rel])
    assert _open(settings) == []


def test_sweep_reconciles_the_whole_set(settings: Settings) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (6, 't', 'Bad 6', 1, 1), "
            "(7, ' ', 'ok-7', 1, 1)"
        )
    changes = run_sweep(settings, "integrity")
    assert changes.opened == 2
    assert sorted(s for _, _, s in _open(settings)) == ["ads:6", "ads:7"]
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = 'ok-6' WHERE id = 6")
    changes = run_sweep(settings, "integrity")
    assert (changes.opened, changes.refreshed, changes.resolved) == (0, 1, 1)
    assert _open(settings) == [("integrity", "ads.title.required", "ads:7")]


def test_files_sweep_sees_what_events_see(settings: Settings) -> None:
    _write_file(settings, "uploads/ads/stray.webp", age=3600)
    with Database(settings.require_database_url()) as db:
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES "
            "(1, 5, 'm', 'uploads/ads/gone.webp'), (2, 5, 'u', '../etc/passwd')"
        )
    swept = settings.replace()
    run_sweep(swept, "files")
    by_sweep = sorted(_open(settings))
    with Database(settings.require_database_url()) as db:
        db.execute("DELETE FROM guard.notifications")
        db.execute("DELETE FROM guard.findings")
    process_rows(settings, "ad_images", ["1", "2"], ["uploads/ads/gone.webp"])
    process_paths(settings, ["uploads/ads/stray.webp"])
    assert (
        sorted(_open(settings))
        == by_sweep
        == [
            ("files", "missing_file", "ad_images:1"),
            ("files", "orphan_file", "file:uploads/ads/stray.webp"),
            ("files", "unsafe_path", "ad_images:2"),
        ]
    )


def _add_ad(settings: Settings, ad_id: int, slug: str) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (%s, 't', %s, 1, 1)",
            (ad_id, slug),
        )


def test_a_new_duplicate_flags_both_rows_and_fixing_one_resolves_both(settings: Settings) -> None:
    _add_ad(settings, 219, "ok-5")
    process_rows(settings, "ads", ["219"])
    assert sorted(_open(settings)) == [
        ("integrity", "ads.slug.unique", "ads:219"),
        ("integrity", "ads.slug.unique", "ads:5"),
    ]
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = 'fixed-5' WHERE id = 5")
    outcome = process_rows(settings, "ads", ["5"])
    assert outcome.changes.resolved == 2 and _open(settings) == []


def test_deleting_one_of_a_duplicate_pair_resolves_the_survivor(settings: Settings) -> None:
    _add_ad(settings, 219, "ok-5")
    _add_ad(settings, 300, "other-300")
    process_rows(settings, "ads", ["5", "219", "300"])
    assert len(_open(settings)) == 2
    with Database(settings.require_database_url()) as db:
        db.execute("DELETE FROM ads WHERE id = 219")
    process_rows(settings, "ads", ["219"])
    assert _open(settings) == []


def test_a_sweep_does_not_reopen_what_was_fixed_while_it_ran(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import guard.continuous.process as sync
    from guard.checks import CheckContext, integrity

    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = 'Bad 5' WHERE id = 5")
    process_rows(settings, "ads", ["5"])

    def fixed_during_the_sweep(ctx: CheckContext) -> object:
        stale = integrity.run(ctx)  # sees the bad slug
        with Database(settings.require_database_url()) as db:
            db.execute("UPDATE ads SET slug = 'ok-5' WHERE id = 5")
        process_rows(settings, "ads", ["5"])  # the event worker resolves it meanwhile
        return stale

    monkeypatch.setattr(sync, "registry", lambda: {"integrity": fixed_during_the_sweep})
    changes = run_sweep(settings, "integrity")
    assert changes.opened == 0 and _open(settings) == []


def test_any_spelling_the_sweep_accepts_is_a_reference_for_path_events(settings: Settings) -> None:
    spellings = [
        "uploads//ads/a.webp",
        "uploads/./ads/b.webp",
        "././uploads/ads/c.webp",
        "./uploads/ads/d.webp",
        "uploads/ads/e.webp",
    ]
    with Database(settings.require_database_url()) as db:
        for n, stored in enumerate(spellings, 1):
            db.execute(
                "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (%s, 5, 'f', %s)", (n, stored)
            )
    names = ["a", "b", "c", "d", "e", "stray"]
    for name in names:
        _write_file(settings, f"uploads/ads/{name}.webp", age=3600)
    process_paths(settings, [f"uploads/ads/{name}.webp" for name in names])
    by_events = sorted(_open(settings))
    assert by_events == [("files", "orphan_file", "file:uploads/ads/stray.webp")]
    run_sweep(settings, "files")
    assert sorted(_open(settings)) == by_events


def test_a_row_change_reads_the_whole_file_table_only_for_a_path_no_row_names(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the odd spellings ('a//b') reads every row of the file table. A row's change needs it
    only for a path no row names in a usual spelling (its old path, once gone); a new row storing
    its path in a usual spelling names it itself, so that check costs the same however big the table is."""
    whole_table_reads: list[str] = []
    real_fetch_all = Database.fetch_all

    def fetch_all(self: Database, query: Any, params: Any = None) -> list[Any]:
        if "regexp_replace" in repr(query):
            whole_table_reads.append(repr(query))
        return real_fetch_all(self, query, params)

    monkeypatch.setattr(Database, "fetch_all", fetch_all)
    for name in ("a", "b"):
        _write_file(settings, f"uploads/ads/{name}.webp", age=3600)
    rows = [(1, "uploads/ads/a.webp"), (2, "uploads//ads/b.webp"), (3, "uploads/ads/b.webp")]
    with Database(settings.require_database_url()) as db:
        for key, stored in rows:
            db.execute(
                "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (%s, 5, 'f', %s)",
                (key, stored),
            )
    for key, stored in rows:
        process_rows(settings, "ad_images", [str(key)], [stored])
    assert whole_table_reads == [], "a new row's own path sent the check through the whole table"
    assert _open(settings) == []

    with Database(settings.require_database_url()) as db:  # b is then named only as 'uploads//ads/b.webp'
        db.execute("DELETE FROM ad_images WHERE id = 3")
    process_rows(settings, "ad_images", ["3"], ["uploads/ads/b.webp"])
    assert len(whole_table_reads) == 1 and _open(settings) == []
    with Database(settings.require_database_url()) as db:
        db.execute("DELETE FROM ad_images WHERE id = 2")
    process_rows(settings, "ad_images", ["2"], ["uploads//ads/b.webp"])
    assert _open(settings) == [("files", "orphan_file", "file:uploads/ads/b.webp")]


def test_a_row_naming_an_orphan_in_an_odd_spelling_resolves_it(settings: Settings) -> None:
    """The orphan's subject is the file ('uploads/ads/x.webp'); a row that stores 'uploads//ads/x.webp'
    names that file, and its check must scope and lock that subject, not the spelling."""
    rel = "uploads/ads/x.webp"
    _write_file(settings, rel, age=3600)
    process_paths(settings, [rel])
    assert _open(settings) == [("files", "orphan_file", f"file:{rel}")]
    odd = "uploads//ads/x.webp"
    with Database(settings.require_database_url()) as db:
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (7, 5, 'x', %s)", (odd,))
    process_rows(settings, "ad_images", ["7"], [odd])
    assert _open(settings) == []


def test_a_bad_pattern_is_a_configuration_error_in_the_workers_check_too(db_url: str, tmp_path: Path) -> None:
    """The worker checks in one pipelined transaction, where a statement's error arrives with a later
    read: the pattern's check must still say which rule is wrong, not raise a raw database error."""
    bad = Rule("ads.slug.format", "ads", "slug", "format", pattern="([")
    settings = Settings(database_url=db_url, uploads_root=tmp_path, rules=[bad])
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', 'ok-5', 1, 1)")
        install(db, settings)
    with pytest.raises(ConfigError, match=r"rule 'ads\.slug\.format': invalid regular expression"):
        process_rows(settings, "ads", ["5"])


def test_a_row_checks_resolve_looks_up_its_subjects_not_every_open_finding(settings: Settings) -> None:
    """A statement run often gets PostgreSQL's generic plan (built without the parameters' values).
    For a row's check that plan must still find the row's own findings by subject. The statement
    that also served sweeps ("a NULL array means all") could not use an index for the subjects in
    that plan, and read every open finding of the check: 2,000 here, so each row check cost more the
    more findings were open."""
    with Database(settings.require_database_url()) as db:
        db.execute(
            "INSERT INTO guard.findings (check_name, kind, subject, message)"
            " SELECT 'integrity', 'ads.slug.format', 'ads:' || n, 'bad' FROM generate_series(1000, 2999) n"
        )
        db.execute("UPDATE ads SET slug = NULL WHERE id = 5")
    process_rows(settings, "ads", ["5"])
    with Database(settings.require_database_url()) as db:
        db.execute("ANALYZE guard.findings")  # current statistics: the plan is the generic one's to get wrong
        db.execute("UPDATE ads SET slug = 'good-5' WHERE id = 5")
        with db.transaction():
            db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            rules = tuple(r.id for r in settings.rules if r.table == "ads")
            changes = store.reconcile(db, store.Scope("integrity", rules, ("ads:5",)), [])
            row = db.fetch_one(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
                " WHERE relid = 'guard.findings'::regclass"
            )
    assert changes.resolved == 1
    assert row is not None and int(row[0]) < 20, f"{row[0] if row else None} findings read to resolve one"
    assert len(_open(settings)) == 2000


def test_after_a_burst_of_findings_a_row_checks_resolve_still_looks_up_its_subjects(
    settings: Settings,
) -> None:
    """A burst of findings on a new install (an incident's first hour) leaves guard.findings without
    statistics until autovacuum's next round, up to a minute later: PostgreSQL then believes the check's
    name alone picks few rows, and each row check's resolve read every open finding of the check. The
    workers keep the table's statistics current themselves after such a burst."""
    with Database(settings.require_database_url()) as db:
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id)"
            " SELECT n, 't', NULL, 1, 1 FROM generate_series(1000, 2999) n"
        )
    outcome = process_rows(settings, "ads", [str(n) for n in range(1000, 3000)])
    assert outcome.changes.opened == 2000
    with Database(settings.require_database_url()) as db, db.transaction():
        rules = tuple(r.id for r in settings.rules if r.table == "ads")
        changes = store.reconcile(db, store.Scope("integrity", rules, ("ads:1000",)), [])
        row = db.fetch_one(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
            " WHERE relid = 'guard.findings'::regclass"
        )
    assert changes.resolved == 1
    assert row is not None and int(row[0]) < 20, f"{row[0] if row else None} findings read to resolve one"
