from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from guard.checks import CheckContext, integrity
from guard.config.rules import Rule
from guard.config.settings import Settings, load_settings
from guard.db.database import Database
from guard.errors import ConfigError

pytestmark = pytest.mark.integration


def seed(db: Database) -> None:
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars'), (2, '  ', 'blank')")
    db.execute(
        "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES"
        " (1, 'Honda', 'honda-city-1', 1, 1),"
        " (2, 'Null slug', NULL, 1, 1),"
        " (3, 'Empty slug', '', 1, 1),"
        " (4, 'Spaces slug', '   ', 1, 1),"
        " (5, 'Bad format', 'Honda City', 1, 1),"
        " (6, 'Dup a', 'dup-slug-6', 1, 1),"
        " (7, 'Dup b', 'dup-slug-6', 1, 1),"
        " (8, E'\\t ', 'blank-title-8', 1, 1),"
        " (9, 'Dup blank', '', 1, 1)"
    )
    db.execute(
        "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES"
        " (1, 1, 'a', 'uploads/ads/a.webp'), (2, 1, 'b', NULL), (3, 1, 'c', ' ')"
    )
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (4, 404, 'd', 'x')")


def context(db_url: str, **changes: object) -> CheckContext:
    settings = load_settings(environ={"DATABASE_URL": db_url}).replace(**changes)
    return CheckContext(settings, limit=100)


def subjects(result: object, rule_id: str) -> set[str]:
    return {f.subject for f in result.findings if f.kind == rule_id}  # type: ignore[attr-defined]


def test_every_default_rule_counts_exactly(db: Database, db_url: str) -> None:
    seed(db)
    result = integrity.run(context(db_url))
    assert result.counts == {
        "ads.slug.required": 4,
        "ads.slug.format": 1,
        "ads.slug.unique": 2,
        "ads.title.required": 1,
        "categories.name.required": 1,
        "ad_images.file_path.required": 2,
        "ad_images.ad_id.references": 1,
    }
    assert subjects(result, "ads.slug.required") == {"ads:2", "ads:3", "ads:4", "ads:9"}
    assert subjects(result, "ads.slug.unique") == {"ads:6", "ads:7"}
    assert subjects(result, "ads.slug.format") == {"ads:5"}


def test_required_failures_are_not_also_format_or_unique(db: Database, db_url: str) -> None:
    seed(db)
    result = integrity.run(context(db_url))
    blank = {"ads:2", "ads:3", "ads:4", "ads:9"}
    assert not blank & (subjects(result, "ads.slug.format") | subjects(result, "ads.slug.unique"))


def test_clean_database_has_no_findings(db_url: str) -> None:
    assert integrity.run(context(db_url)).ok


def test_limit_caps_examples_not_counts(db: Database, db_url: str) -> None:
    seed(db)
    ctx = replace(context(db_url), limit=1)
    result = integrity.run(ctx)
    assert result.counts["ads.slug.required"] == 4
    assert len([f for f in result.findings if f.kind == "ads.slug.required"]) == 1


def test_check_keys_checks_only_those_rows_but_uniqueness_against_all(db: Database, db_url: str) -> None:
    seed(db)
    rules = load_settings(environ={}).rules
    result = integrity.check_keys(db, rules, "ads", ["1", "6", "2"])
    assert {(f.kind, f.subject) for f in result.findings} == {
        ("ads.slug.unique", "ads:6"),
        ("ads.slug.required", "ads:2"),
    }


def test_check_keys_of_deleted_rows_is_empty(db: Database) -> None:
    seed(db)
    result = integrity.check_keys(db, load_settings(environ={}).rules, "ads", ["999"])
    assert result.ok


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            Rule("ghost.slug.required", "ghost", "slug", "required"),
            "rule 'ghost.slug.required': table 'ghost'",
        ),
        (
            Rule("ads.nope.required", "ads", "nope", "required"),
            "rule 'ads.nope.required': column 'ads.nope'",
        ),
        (
            Rule("ads.slug.format", "ads", "slug", "format", pattern="(["),
            "rule 'ads.slug.format': invalid regular",
        ),
        (
            Rule("ads.user_id.references", "ads", "user_id", "references", target="people.id"),
            "rule 'ads.user_id.references': table 'people'",
        ),
    ],
)
def test_bad_rules_are_configuration_errors_naming_the_rule(db_url: str, rule: Rule, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        integrity.run(context(db_url, rules=(rule,)))


def test_custom_rules_from_toml(db: Database, db_url: str, tmp_path: Path) -> None:
    seed(db)
    config = tmp_path / "guard.toml"
    config.write_text(
        'use_default_rules = false\n[rules."categories.slug.format"]\npattern = "^[a-z]+$"\n'
        '[rules."ads.category_id.references"]\nreferences = "categories.id"\n'
    )
    settings = load_settings(environ={"DATABASE_URL": db_url}, path=config)
    result = integrity.run(CheckContext(settings))
    assert result.counts == {"categories.slug.format": 0, "ads.category_id.references": 0}


def test_references_to_a_non_unique_column_counts_each_row_once(db: Database, db_url: str) -> None:
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'A', 'a'), (2, 'B', 'b'), (3, 'C', 'c')")
    db.execute(
        "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES"
        " (1, 'x', 'x-1', 1, 1), (2, 'y', 'y-2', 1, 1), (3, 'z', 'z-3', 3, 1)"
    )
    rule = Rule("categories.id.references", "categories", "id", "references", target="ads.category_id")
    result = integrity.run(context(db_url, rules=(rule,)))
    assert result.counts == {"categories.id.references": 1}
    assert subjects(result, "categories.id.references") == {"categories:2"}
    keyed = integrity.check_keys(db, (rule,), "categories", ["1", "2"])
    assert {f.subject for f in keyed.findings} == {"categories:2"}


def test_a_prisma_url_with_schema_checks_the_tables_in_that_schema(db: Database, db_url: str) -> None:
    """The app's own `.env` URL works as is: Prisma's ?schema= is where its tables are."""
    seed(db)
    db.execute("CREATE SCHEMA shop")
    for table in ("ad_images", "user_favorites", "ads", "categories", "users", "_prisma_migrations"):
        db.execute(f"ALTER TABLE public.{table} SET SCHEMA shop")
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    prisma = f"postgresql://postgres@127.0.0.1:5432/{name}?schema=shop&connection_limit=5"
    result = integrity.run(context(prisma))
    assert result.error is None
    assert result.counts["ads.slug.required"] == 4 and result.counts["ad_images.ad_id.references"] == 1


def test_examples_are_the_lowest_keys_whatever_the_storage_order(db: Database, db_url: str) -> None:
    """The kept examples do not depend on where rows sit on disk (nor on how parallel workers split them)."""
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    for ad in (9, 3, 7, 2, 5):  # stored in this order, so a plain scan meets ads:9 first
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (%s, ' ', 'Bad Slug', 1, 1)",
            (ad,),
        )
    result = integrity.run(replace(context(db_url), limit=2))
    for kind in ("ads.slug.format", "ads.slug.unique", "ads.title.required"):
        assert [f.subject for f in result.findings if f.kind == kind] == ["ads:2", "ads:3"], kind
        assert result.counts[kind] == 5
    # and in row order: each row's findings together, the rules in their configured order
    assert [(f.subject, f.kind) for f in result.findings][:3] == [
        ("ads:2", "ads.slug.format"),
        ("ads:2", "ads.slug.unique"),
        ("ads:2", "ads.title.required"),
    ]


SLUG_RULE_SETS = {
    "defaults": None,
    "unique without required": (
        Rule("ads.slug.unique", "ads", "slug", "unique"),
        Rule("ads.slug.format", "ads", "slug", "format", pattern="^[a-z0-9-]+$"),
    ),
    "two patterns, required after them": (
        Rule("ads.slug.format", "ads", "slug", "format", pattern="^[a-z0-9-]+$"),
        Rule("ads.slug.digits", "ads", "slug", "format", pattern="[0-9]$"),
        Rule("ads.slug.unique", "ads", "slug", "unique"),
        Rule("ads.slug.required", "ads", "slug", "required"),
    ),
    "unique on two columns": (
        Rule("ads.title.unique", "ads", "title", "unique"),
        Rule("ads.slug.unique", "ads", "slug", "unique"),
        Rule("ads.title.required", "ads", "title", "required"),
        Rule("ads.category_id.references", "ads", "category_id", "references", target="categories.id"),
    ),
    "unique on a number": (
        Rule("ads.category_id.unique", "ads", "category_id", "unique"),
        Rule("ads.category_id.required", "ads", "category_id", "required"),
    ),
}


@pytest.mark.parametrize("rules", SLUG_RULE_SETS.values(), ids=SLUG_RULE_SETS.keys())
def test_the_whole_table_pass_judges_each_row_as_the_keyed_pass_does(
    db: Database, db_url: str, rules: tuple[Rule, ...] | None
) -> None:
    """Judging each distinct value once (the sweep) flags exactly the rows judging each row does."""
    seed(db)
    db.execute("INSERT INTO categories (id, name, slug) VALUES (3, 'Bikes', 'bikes')")
    db.execute(
        "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES"
        " (10, 'Honda', 'Honda City', 3, 1), (11, E' \\n', ' ', 3, 1), (12, 'dup-9', 'dup-slug-6', 1, 1),"
        " (13, '', 'plain-13', 1, 1), (14, 'Honda', 'Plain 14', 1, 1)"
    )
    settings = load_settings(environ={"DATABASE_URL": db_url})
    chosen = settings.rules if rules is None else rules
    whole = integrity.run(CheckContext(settings.replace(rules=chosen), limit=None))
    keys = [str(r[0]) for r in db.fetch_all("SELECT id FROM ads")]
    keyed = integrity.check_keys(db, chosen, "ads", keys)
    ads_kinds = {r.id for r in chosen if r.table == "ads"}
    assert sorted((f.kind, f.subject, f.message) for f in whole.findings if f.kind in ads_kinds) == sorted(
        (f.kind, f.subject, f.message) for f in keyed.findings
    )
    assert {k: n for k, n in whole.counts.items() if k in ads_kinds} == keyed.counts
    assert sum(keyed.counts.values()) > 0


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_a_capped_check_counts_all_and_keeps_the_first_examples_of_the_whole(
    db: Database, db_url: str, limit: int
) -> None:
    """Counted on the server, the capped check agrees with the sweep's complete set of findings."""
    seed(db)
    whole = integrity.run(replace(context(db_url), limit=None))
    capped = integrity.run(replace(context(db_url), limit=limit))
    assert capped.counts == whole.counts
    firsts = {f for kind in whole.counts for f in [f for f in whole.findings if f.kind == kind][:limit]}
    assert list(capped.findings) == [f for f in whole.findings if f in firsts]  # and in the same order
    assert len(capped.findings) == sum(min(n, limit) for n in whole.counts.values())


def test_values_equal_but_spelled_apart_are_each_judged_by_their_own_text(db: Database, db_url: str) -> None:
    """citext's 'bad-slug' = 'Bad-Slug' and numeric's 1.0 = 1.00: one group, two spellings, two verdicts."""
    db.execute("CREATE EXTENSION IF NOT EXISTS citext")
    db.execute("CREATE TABLE gadgets (id integer PRIMARY KEY, code citext, price numeric)")
    db.execute(
        "INSERT INTO gadgets VALUES (1, 'bad-slug', 1.00), (2, 'Bad-Slug', 1.0), (3, 'Bad-Slug', 2.0),"
        " (4, 'fine', 3.0), (5, 'bad-slug', 1.00)"
    )
    rules = (
        Rule("gadgets.code.unique", "gadgets", "code", "unique"),
        Rule("gadgets.code.format", "gadgets", "code", "format", pattern="^[a-z-]+$"),
        Rule("gadgets.price.unique", "gadgets", "price", "unique"),
        Rule("gadgets.price.format", "gadgets", "price", "format", pattern="^[0-9]+[.][0-9]$"),
    )
    settings = load_settings(environ={"DATABASE_URL": db_url}).replace(rules=rules)
    whole = integrity.run(CheckContext(settings, limit=None))
    keyed = integrity.check_keys(db, rules, "gadgets", ["1", "2", "3", "4", "5"])
    flagged = {(f.kind, f.subject) for f in whole.findings}
    assert flagged == {(f.kind, f.subject) for f in keyed.findings}
    assert {s for k, s in flagged if k == "gadgets.code.format"} == {"gadgets:2", "gadgets:3"}
    assert {s for k, s in flagged if k == "gadgets.price.format"} == {"gadgets:1", "gadgets:5"}
    assert {s for k, s in flagged if k == "gadgets.code.unique"} == {f"gadgets:{n}" for n in (1, 2, 3, 5)}


def test_shared_values_examples_are_the_lowest_keys_however_the_groups_interleave(
    db: Database, db_url: str
) -> None:
    """Counted in the grouping, the examples looked up among the first values' rows are the whole's first."""
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    # values a (rows 1, 4, 9), b (2, 3), c (5, 6), d (7, 8): the first rows by key mix the values, and
    # a's last row comes after every other value's lowest key
    for ad, slug in ((1, "a-1"), (4, "a-1"), (9, "a-1"), (2, "b-2"), (3, "b-2"), (5, "c-5"), (6, "c-5")):
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (%s, 'T', %s, 1, 1)", (ad, slug)
        )
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (7, 'T', 'd-7', 1, 1)")
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (8, 'T', 'd-7', 1, 1)")
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (10, 'T', ' ', 1, 1)")
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (11, 'T', ' ', 1, 1)")
    whole = integrity.run(replace(context(db_url), limit=None))
    shared = [f.subject for f in whole.findings if f.kind == "ads.slug.unique"]
    assert shared == [f"ads:{n}" for n in range(1, 10)]  # the blank pair is not shared: it is blank
    for limit in range(11):
        capped = integrity.run(replace(context(db_url), limit=limit))
        assert [f.subject for f in capped.findings if f.kind == "ads.slug.unique"] == shared[:limit], limit
        assert capped.counts == whole.counts


def test_a_table_keyed_by_text_is_swept_in_one_statement_with_the_same_findings(
    db: Database, db_url: str
) -> None:
    """Keys Python cannot order as the server does are never merged: the table's rules run as one pass."""
    # ICU sorts 'b' before 'B' and both after '_'; Python's str order is 'B' < '_' < 'b'
    db.execute('CREATE TABLE codes (code text COLLATE "und-x-icu" PRIMARY KEY, label text)')
    db.execute(
        "INSERT INTO codes VALUES ('b', 'x-1'), ('B', 'x-1'), ('a', 'Bad Label'), ('c', ' '), ('_', 'y-2')"
    )
    rules = (
        Rule("codes.label.required", "codes", "label", "required"),
        Rule("codes.label.format", "codes", "label", "format", pattern="^[a-z]+-[0-9]+$"),
        Rule("codes.label.unique", "codes", "label", "unique"),
    )
    settings = load_settings(environ={"DATABASE_URL": db_url}).replace(rules=rules)
    whole = integrity.run(CheckContext(settings, limit=None))
    keyed = integrity.check_keys(db, rules, "codes", ["a", "b", "B", "c", "_"])
    assert sorted((f.kind, f.subject) for f in whole.findings) == sorted(
        (f.kind, f.subject) for f in keyed.findings
    )
    assert whole.counts == {"codes.label.required": 1, "codes.label.format": 1, "codes.label.unique": 2}
    order = [r[0] for r in db.fetch_all("SELECT code FROM codes WHERE label = 'x-1' ORDER BY code")]
    assert [f.subject for f in whole.findings if f.kind == "codes.label.unique"] == [
        f"codes:{c}" for c in order
    ]
    capped = integrity.run(CheckContext(settings, limit=1))
    assert [f.subject for f in capped.findings if f.kind == "codes.label.unique"] == [f"codes:{order[0]}"]


def slug_required_and_unique(db_url: str, table: str) -> Settings:
    """Settings whose only rules are a table's slug required and unique (a split table's two parts)."""
    rules = (
        Rule(f"{table}.slug.required", table, "slug", "required"),
        Rule(f"{table}.slug.unique", table, "slug", "unique"),
    )
    return load_settings(environ={"DATABASE_URL": db_url}).replace(rules=rules)


def test_a_table_keyed_by_uuid_is_checked_with_and_without_a_limit(db: Database, db_url: str) -> None:
    # PostgreSQL 15 has no min(uuid): the capped sweep of a grouped uuid-keyed table must not need one
    db.execute("CREATE TABLE tags (id uuid PRIMARY KEY, slug text)")
    db.execute(
        "INSERT INTO tags VALUES ('00000000-0000-0000-0000-000000000001', 'same'),"
        " ('00000000-0000-0000-0000-000000000002', 'same'), ('00000000-0000-0000-0000-000000000003', NULL)"
    )
    settings = slug_required_and_unique(db_url, "tags")
    for limit in (None, 0, 1, 20):
        result = integrity.run(CheckContext(settings, limit=limit))
        assert result.counts == {"tags.slug.required": 1, "tags.slug.unique": 2}, limit


def test_a_grouped_table_is_judged_on_one_snapshot_though_its_rules_run_as_two_statements(
    db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ad 2's slug goes from NULL to 'dup' between the two statements: it is bad all along (required,
    # then shared), so one sweep must report it under one rule or the other, never under none.
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    db.execute(
        "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES"
        " (1, 't', 'dup', 1, 1), (2, 't', NULL, 1, 1), (3, 't', 'ok-3', 1, 1)"
    )
    settings = slug_required_and_unique(db_url, "ads")
    sweep = integrity._sweep
    grouped_done = threading.Event()

    def in_turn(part_db: Database, plan: integrity.TablePlan, limit: int | None, keyed: bool) -> object:
        if integrity.groups(plan):  # the grouping runs first, then the row changes, then the rest
            done = sweep(part_db, plan, limit, keyed)
            with psycopg.connect(db_url, autocommit=True) as writer:
                writer.execute("UPDATE ads SET slug = 'dup' WHERE id = 2")
            grouped_done.set()
            return done
        assert grouped_done.wait(30)
        return sweep(part_db, plan, limit, keyed)

    monkeypatch.setattr(integrity, "_sweep", in_turn)
    for limit in (None, 20):
        db.execute("UPDATE ads SET slug = NULL WHERE id = 2")
        grouped_done.clear()
        counts = integrity.run(CheckContext(settings, limit=limit)).counts
        assert counts in (
            {"ads.slug.required": 1, "ads.slug.unique": 0},  # before the change
            {"ads.slug.required": 0, "ads.slug.unique": 2},  # after it
        ), (limit, counts)


@pytest.mark.parametrize("failing", ["grouping", "row pass"])
def test_a_pass_that_fails_stops_the_sweeps_other_statements_instead_of_waiting_for_them(
    db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # ads is swept as two statements: the grouping fails (the other half and the other tables are
    # stopped by it), or the row pass does (the grouping, in the sweep's own thread, is stopped by it)
    seed(db)
    sweep = integrity._sweep
    long_pass = "SELECT pg_sleep(600)"  # what a large table's pass is to the others: minutes

    def running() -> int:
        with psycopg.connect(db_url, autocommit=True) as look:
            row = look.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND query = %s",
                (long_pass,),
            ).fetchone()
        return int(row[0]) if row else 0

    def one_fails(part_db: Database, plan: integrity.TablePlan, limit: int | None, keyed: bool) -> object:
        if plan.table == "ads" and integrity.groups(plan) == (failing == "grouping"):
            deadline = time.monotonic() + 30
            while running() < 2 and time.monotonic() < deadline:  # its sibling and another table's
                time.sleep(0.01)
            part_db.fetch_one("SELECT 1 / 0")  # a statement that fails (disk full, a cancel, ...)
        part_db.fetch_one(long_pass)
        return sweep(part_db, plan, limit, keyed)

    monkeypatch.setattr(integrity, "_sweep", one_fails)
    raised: list[BaseException] = []

    def check() -> None:
        try:
            integrity.run(context(db_url))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    sweeping = threading.Thread(target=check)
    sweeping.start()
    try:
        sweeping.join(60)  # returns as soon as the failure is told: well under a second here
        assert not sweeping.is_alive(), "the sweep waited for its other passes' statements to end"
        assert running() == 0  # every other statement was stopped, none left running
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:  # never leave a 600 s statement behind
            admin.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query = %s",
                (long_pass,),
            )
        sweeping.join(30)
    assert len(raised) == 1 and isinstance(raised[0], psycopg.errors.DivisionByZero), raised
