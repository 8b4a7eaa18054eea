"""guard install: every change to watched tables is captured, then collected into the outbox coalesced."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg import sql

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import VERSION, install, installed_version, uninstall
from guard.db.database import Database

pytestmark = pytest.mark.integration


def _seed(db: Database) -> None:
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")


def _seed_and_install(db: Database, db_url: str) -> None:
    _seed(db)
    install(db, Settings(database_url=db_url))


def _one_ad(db: Database) -> None:
    """Ad 5, slug a-1: the row most tests change."""
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', 'a-1', 1, 1)")


def _ten_ads(db: Database) -> None:
    db.execute(
        "INSERT INTO ads (title, slug, category_id, user_id) SELECT 't', 's-' || g, 1, 1 "
        "FROM generate_series(1, 10) g"
    )


def _outbox(db: Database) -> list[tuple[object, ...]]:
    outbox.collect(db)
    return db.fetch_all(
        "SELECT tbl, row_key, old_path, new_path, paths, changes FROM guard.outbox ORDER BY id"
    )


def test_install_is_idempotent_and_versioned(db_url: str) -> None:
    with Database(db_url) as db:
        assert installed_version(db) is None
        first = install(db, Settings(database_url=db_url))
        second = install(db, Settings(database_url=db_url))
        assert [t.name for t in first] == [t.name for t in second] == ["ad_images", "ads", "categories"]
        assert installed_version(db) == VERSION
        triggers = db.fetch_all(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'guard_capture_%' AND NOT tgisinternal"
        )
        assert triggers[0][0] == 9


def test_changes_are_captured_coalesced_and_carry_paths(db_url: str) -> None:
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
        _one_ad(db)
        db.execute("UPDATE ads SET slug = 'b-1' WHERE id = 5")
        db.execute("UPDATE ads SET slug = 'c-1' WHERE id = 5")
        db.execute("UPDATE ads SET price = 3 WHERE id = 5")  # no rule reads price: not queued
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (7, 5, 'x', 'uploads/ads/x.webp')"
        )
        db.execute("UPDATE ad_images SET file_path = 'uploads/ads/y.webp' WHERE id = 7")
        rows = _outbox(db)
    image, ad = sorted(rows, key=lambda r: str(r[0]))  # one collect batch: id order is key order
    assert ad[:2] == ("ads", "5") and ad[5] == 3
    assert image[:4] == ("ad_images", "7", "uploads/ads/x.webp", "uploads/ads/y.webp")
    assert sorted(image[4]) == ["uploads/ads/x.webp", "uploads/ads/y.webp"]


def test_change_after_dispatch_is_a_new_entry_and_delete_keeps_old_path(db_url: str) -> None:
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
        _one_ad(db)
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (7, 5, 'x', 'p/x')")
        outbox.collect(db)
        with outbox.claim(db, 100, 30) as claimed:
            assert {(c.table, c.key) for c in claimed} == {("ads", "5"), ("ad_images", "7")}
        db.execute("DELETE FROM ad_images WHERE id = 7")
        rows = _outbox(db)
    assert rows[-1][:3] == ("ad_images", "7", "p/x") and rows[-1][4] == ["p/x"]
    assert len(rows) == 3


def test_claim_skips_locked_rows_and_redispatches_after_the_lease(db_url: str) -> None:
    with Database(db_url) as db, Database(db_url) as other:
        _seed_and_install(db, db_url)
        _ten_ads(db)
        outbox.collect(db)
        with outbox.claim(db, 4, 30) as mine, outbox.claim(other, 100, 30) as theirs:
            assert len(mine) == 4 and len(theirs) == 6
            assert not {c.id for c in mine} & {c.id for c in theirs}
        with outbox.claim(db, 100, 30) as again:
            assert again == []  # all leased
        db.execute(
            "UPDATE guard.outbox SET lease_until = now() - interval '1 second' WHERE id <= "
            "(SELECT min(id) FROM guard.outbox)"
        )
        with outbox.claim(db, 100, 30) as redispatched:
            assert len(redispatched) == 1 and redispatched[0].attempts == 2
        outbox.mark_processed(db, [c.id for c in redispatched])
        assert outbox.backlog(db) == 9


def test_claim_rolls_back_when_dispatch_fails(db_url: str) -> None:
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
        db.execute("INSERT INTO ads (title, slug, category_id, user_id) VALUES ('t', 's-1', 1, 1)")
        outbox.collect(db)
        with pytest.raises(RuntimeError), outbox.claim(db, 10, 30) as claimed:
            assert len(claimed) == 1
            raise RuntimeError("broker down")
        with outbox.claim(db, 10, 30) as claimed:
            assert len(claimed) == 1 and claimed[0].attempts == 1


def test_the_write_only_appends_and_collecting_moves_it_once(db_url: str) -> None:
    """The writer's transaction holds the durable record; collect moves it and leaves nothing behind."""
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
        _one_ad(db)
        db.execute("UPDATE ads SET slug = 'b-1' WHERE id = 5")
        assert db.fetch_all("SELECT tbl, row_key FROM guard.capture ORDER BY seq") == [("ads", "5")] * 2
        assert db.fetch_one("SELECT count(*) FROM guard.outbox") == (0,)
        assert outbox.backlog(db) == 2  # not collected yet, still counted
        assert outbox.collect(db) == 2
        assert outbox.collect(db) == 0
        assert db.fetch_one("SELECT count(*) FROM guard.capture") == (0,)
        assert outbox.backlog(db) == 1  # coalesced into one outbox row
        with db.transaction():
            db.execute("UPDATE ads SET slug = 'c-1' WHERE id = 5")
            db.execute("ROLLBACK")  # the app's rollback takes the capture row with it
    with Database(db_url) as db:
        assert db.fetch_one("SELECT count(*) FROM guard.capture") == (0,)


def test_concurrent_collectors_move_each_change_exactly_once(db_url: str) -> None:
    """Several listeners: one collector's batch is locked, the other skips it and takes the rest."""
    with Database(db_url) as db, Database(db_url) as other:
        _seed_and_install(db, db_url)
        _ten_ads(db)
        db.execute("UPDATE ads SET slug = slug || 'x'")  # a second change to every row
        moved: list[int] = []
        with db.transaction():
            assert outbox.collect(db, 4) == 4  # its capture rows stay locked until this transaction ends
            # the other skips those four; its upserts of the same keys wait for this commit, then merge
            second = threading.Thread(target=lambda: moved.append(outbox.collect(other)))
            second.start()
            second.join(0.5)
        second.join(10)
        assert moved == [16]
        assert outbox.collect(db) == 0
        rows = db.fetch_all("SELECT row_key, changes FROM guard.outbox ORDER BY row_key::int")
    assert [r[0] for r in rows] == [str(i) for i in range(1, 11)]
    assert sum(int(str(r[1])) for r in rows) == 20


def test_collectors_merging_out_of_order_keep_paths_in_change_order(db_url: str) -> None:
    """A collector that took the older changes but commits last must not turn the paths back."""
    with Database(db_url) as db, Database(db_url) as other:
        _seed_and_install(db, db_url)
        _one_ad(db)
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (7, 5, 'x', 'p/a')")
        outbox.collect(db)
        db.execute("UPDATE ad_images SET file_path = 'p/b' WHERE id = 7")
        db.execute("UPDATE ad_images SET file_path = 'p/c' WHERE id = 7")
        with db.transaction():
            # this collector holds the older change (a -> b), as if it had just picked its batch
            db.execute("SELECT seq FROM guard.capture ORDER BY seq LIMIT 1 FOR UPDATE")
            assert outbox.collect(other) == 1  # the newer change (b -> c) is merged and committed first
            assert outbox.collect(db) == 1
        rows = db.fetch_all(
            "SELECT old_path, new_path, paths, changes FROM guard.outbox WHERE tbl = 'ad_images'"
        )
    assert len(rows) == 1
    old_path, new_path, paths, changes = rows[0]
    assert (old_path, new_path, changes) == ("p/a", "p/c", 3)
    assert sorted(paths) == ["p/a", "p/b", "p/c"]


def test_install_upgrades_a_version_2_install(db_url: str) -> None:
    """Version 2 had no capture table and wrote the outbox directly; its pending rows still get claimed."""
    with Database(db_url) as db:
        _seed(db)
        settings = Settings(database_url=db_url)
        install(db, settings)
        db.execute("DROP TABLE guard.capture")
        db.execute("ALTER TABLE guard.outbox DROP COLUMN old_seq, DROP COLUMN new_seq")
        db.execute("DELETE FROM guard.version")
        db.execute("INSERT INTO guard.version (version) VALUES (2)")
        db.execute(  # left by version 2
            "INSERT INTO guard.outbox (tbl, row_key, old_path, new_path, paths) "
            "VALUES ('ads', '99', NULL, NULL, '{}'), ('ad_images', '7', 'p/a', 'p/b', '{p/a,p/b}')"
        )
        install(db, settings)
        assert installed_version(db) == VERSION == 9
        _one_ad(db)
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (6, 't', 'b-1', 1, 1)")
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (8, 6, 'x', 'p/x')")
        db.execute("UPDATE ad_images SET id = 7, file_path = 'p/c' WHERE id = 8")  # merges into 7's row
        outbox.collect(db)
        paths = db.fetch_one("SELECT old_path, new_path FROM guard.outbox WHERE row_key = '7'")
        assert paths == ("p/a", "p/c")  # the older version's old path stays first
        with outbox.claim(db, 100, 30) as claimed:
            assert sorted(c.key for c in claimed) == ["5", "6", "7", "8", "99"]


def test_a_writers_search_path_never_runs_its_own_code_as_guards_owner(db_url: str) -> None:
    """The capture functions are SECURITY DEFINER without SET search_path: every name is qualified."""
    name = f"guard_writer_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
        db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
        try:
            db.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ads, ad_images TO {}").format(role))
            # a writer's schema with its own text "=" (and a table that records who ran it)
            db.execute("CREATE SCHEMA trap")
            db.execute(sql.SQL("GRANT USAGE ON SCHEMA trap TO {}").format(role))
            db.execute("CREATE TABLE trap.ran_as (who name)")
            db.execute("GRANT INSERT ON trap.ran_as TO PUBLIC")
            db.execute(
                "CREATE FUNCTION trap.eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO trap.ran_as VALUES (current_user); "
                "RETURN a OPERATOR(pg_catalog.=) b; END $$"
            )
            db.execute("CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.eq)")
            with db.transaction():
                db.execute(sql.SQL("SET LOCAL ROLE {}").format(role))
                db.execute("SET LOCAL search_path = trap, pg_catalog, public")
                db.execute(
                    "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', 'a-1', 1, 1)"
                )
                db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (7, 5, 'x', 'p/a')")
                db.execute("UPDATE ad_images SET file_path = 'p/b' WHERE id = 7")
                db.execute("UPDATE ad_images SET id = 8 WHERE id = 7")
                db.execute("DELETE FROM ad_images WHERE id = 8")
                db.execute("SELECT 'a' = 'a'")  # the trap does work when the writer itself uses "="
            ran_as = db.fetch_all("SELECT DISTINCT who FROM trap.ran_as")
            assert outbox.collect(db) == 6
        finally:
            db.execute(sql.SQL("DROP OWNED BY {}").format(role))
            db.execute(sql.SQL("DROP ROLE {}").format(role))
    assert [str(r[0]) for r in ran_as] == [name]  # only the writer's own query, as the writer


def test_notify_wakes_a_listener(db_url: str) -> None:
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN guard_outbox")
        with Database(db_url) as db:
            db.execute("INSERT INTO ads (title, slug, category_id, user_id) VALUES ('t', 's-1', 1, 1)")
        notices = list(listener.notifies(timeout=5, stop_after=1))
    assert notices and notices[0].channel == "guard_outbox"


def test_uninstall_removes_triggers_and_schema(db_url: str) -> None:
    with Database(db_url) as db:
        _seed_and_install(db, db_url)
        assert uninstall(db) == ["ad_images", "ads", "categories"]
        assert installed_version(db) is None
        db.execute("INSERT INTO ads (title, slug, category_id, user_id) VALUES ('t', 's-1', 1, 1)")
        assert uninstall(db) == []


def test_install_upgrades_a_version_5_install_with_acks_and_the_fingerprint(db_url: str) -> None:
    """Version 5 had neither guard.acks nor listener_state.schema_fingerprint; installing adds both."""
    with Database(db_url) as db:
        _seed(db)
        settings = Settings(database_url=db_url)
        install(db, settings)
        db.execute("DROP TABLE guard.acks")
        db.execute(
            "ALTER TABLE guard.listener_state DROP COLUMN schema_fingerprint, DROP COLUMN fingerprint_at"
        )
        db.execute("DELETE FROM guard.version")
        db.execute("INSERT INTO guard.version (version) VALUES (5)")
        assert installed_version(db) == 5
        install(db, settings)
        assert installed_version(db) == VERSION == 9
        db.execute("INSERT INTO guard.acks (kind, reason, acked_by) VALUES ('orphan_file', 'known', 'ops')")
        assert db.fetch_one("SELECT schema_fingerprint FROM guard.listener_state") == (None,)
