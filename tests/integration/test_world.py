"""Build small demo worlds and check every ground-truth number against the database and the folder."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from guard.demo.world import build_world, drop_world
from guard.errors import UsageError
from guard.schema.history import read_migrations

pytestmark = pytest.mark.integration

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MIGRATIONS = Path(__file__).resolve().parents[2] / "examples/thulobazaar/prisma/migrations"
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*-[0-9]+")
GRACE_S = 600
VOLATILE = ("database", "database_url", "uploads_root", "duration_s")

Builder = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    """Build worlds in uniquely named databases and drop them all afterwards."""
    built: list[tuple[str, Path]] = []

    def _build(ads: int, bad_rate: float, seed: int = 1) -> dict[str, Any]:
        name = f"guard_test_world_{uuid.uuid4().hex[:12]}"
        root = tmp_path_factory.mktemp("world") / "uploads"
        built.append((name, root))
        return build_world(SERVER_URL, name, root, ads, bad_rate, seed=seed)

    yield _build
    for name, root in built:
        drop_world(SERVER_URL, name, root)


@pytest.fixture(scope="module")
def world(build: Builder) -> dict[str, Any]:
    return build(300, 0.05)


def fetch(truth: dict[str, Any], query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(truth["database_url"]) as conn:
        return conn.execute(query).fetchall()


def blank(value: str | None) -> bool:
    return value is None or value.strip() == ""


def slug_kinds(truth: dict[str, Any]) -> dict[str, set[int]]:
    """Sort every ad into the slug kinds it breaks, in Python."""
    rows = fetch(truth, "SELECT id, slug FROM ads")
    seen: dict[str, list[int]] = {}
    for ad_id, slug in rows:
        if not blank(slug):
            seen.setdefault(slug, []).append(ad_id)
    return {
        "ads.slug.required": {i for i, s in rows if blank(s)},
        "ads.slug.format": {i for i, s in rows if not blank(s) and not SLUG.fullmatch(s)},
        "ads.slug.unique": {i for ids in seen.values() if len(ids) > 1 for i in ids},
    }


def measured_integrity(truth: dict[str, Any]) -> dict[str, int]:
    """Count each rule's broken rows with plain SQL."""
    queries = {
        "ads.slug.required": "SELECT count(*) FROM ads WHERE slug IS NULL OR btrim(slug) = ''",
        "ads.slug.format": "SELECT count(*) FROM ads WHERE btrim(slug) <> ''"
        " AND slug !~ '^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$'",
        "ads.slug.unique": "SELECT count(*) FROM ads WHERE btrim(slug) <> '' AND slug IN"
        " (SELECT slug FROM ads GROUP BY slug HAVING count(*) > 1)",
        "ads.title.required": "SELECT count(*) FROM ads WHERE btrim(title) = ''",
        "categories.name.required": "SELECT count(*) FROM categories WHERE btrim(name) = ''",
        "ad_images.file_path.required": "SELECT count(*) FROM ad_images"
        " WHERE file_path IS NULL OR btrim(file_path) = ''",
        "ad_images.ad_id.references": "SELECT count(*) FROM ad_images i"
        " WHERE NOT EXISTS (SELECT 1 FROM ads a WHERE a.id = i.ad_id)",
    }
    return {rule: fetch(truth, query)[0][0] for rule, query in queries.items()}


def classify(root: Path, path: str) -> str:
    """Return 'unsafe', 'missing' or 'ok' for one stored path."""
    if path.startswith("/") or "\\" in path or ".." in path.split("/"):
        return "unsafe"
    full = root / path
    if not os.path.realpath(full).startswith(str(root) + os.sep):
        return "unsafe"
    return "ok" if full.is_file() else "missing"


def measured_files(truth: dict[str, Any]) -> dict[str, Any]:
    """Walk uploads/ads and classify every stored path, as a files check would."""
    root = Path(truth["uploads_root"])
    kinds: dict[str, set[str]] = {"ok": set(), "missing": set(), "unsafe": set()}
    for (path,) in fetch(truth, "SELECT file_path FROM ad_images"):
        if not blank(path):
            kinds[classify(root, path)].add(path)
    referenced = {os.path.normpath(path) for path in kinds["ok"]}
    regular = [e for e in os.scandir(root / "uploads/ads") if e.is_file(follow_symlinks=False)]
    now = time.time()
    unreferenced = [e for e in regular if f"uploads/ads/{e.name}" not in referenced]
    ages = [now - e.stat(follow_symlinks=False).st_mtime for e in unreferenced]
    return {
        "files": len(regular),
        "files_check": {
            "missing_file": len(kinds["missing"]),
            "orphan_file": sum(age > GRACE_S for age in ages),
            "unsafe_path": len(kinds["unsafe"]),
        },
        "not_counted": {"fresh_upload": sum(age <= GRACE_S for age in ages)},
    }


def measured_sizes(truth: dict[str, Any]) -> dict[str, int]:
    tables = {"ads": "ads", "categories": "categories", "image_rows": "ad_images"}
    return {key: fetch(truth, f"SELECT count(*) FROM {table}")[0][0] for key, table in tables.items()}


def test_sizes_match_the_tables(world: dict[str, Any]) -> None:
    assert measured_sizes(world) == {k: world[k] for k in ("ads", "categories", "image_rows")}
    assert world["ads"] == 300
    assert 400 < world["image_rows"] < 900


def test_integrity_counts_match_sql(world: dict[str, Any]) -> None:
    assert measured_integrity(world) == world["integrity"]
    assert all(count > 0 for count in world["integrity"].values())


def test_slug_kinds_never_overlap(world: dict[str, Any]) -> None:
    kinds = slug_kinds(world)
    assert {k: len(v) for k, v in kinds.items()} == {k: world["integrity"][k] for k in kinds}
    assert sum(map(len, kinds.values())) == len(set().union(*kinds.values()))


def test_files_match_the_folder(world: dict[str, Any]) -> None:
    measured = measured_files(world)
    assert measured == {k: world[k] for k in ("files", "files_check", "not_counted")}
    assert all(count > 0 for count in world["files_check"].values())


def test_unsafe_paths_mix_every_form(world: dict[str, Any]) -> None:
    root = Path(world["uploads_root"])
    paths = [p for (p,) in fetch(world, "SELECT file_path FROM ad_images") if not blank(p)]
    unsafe = [p for p in paths if classify(root, p) == "unsafe"]
    assert "/etc/passwd" in unsafe
    assert any(p.startswith("/uploads/") for p in unsafe)
    assert any(p.startswith("../") for p in unsafe)
    assert any("/../" in p for p in unsafe)
    assert any("\\" in p for p in unsafe)
    links = [root / p for p in unsafe if os.path.islink(root / p)]
    targets = {os.readlink(link)[:1] == "/" for link in links}
    assert targets == {True, False}  # absolute and relative links, all leaving the root
    assert all(Path(os.path.realpath(link)).is_file() for link in links)


def test_awkward_but_clean_files_are_referenced_and_old(world: dict[str, Any]) -> None:
    root = Path(world["uploads_root"])
    ads_dir = root / "uploads/ads"
    paths = {p for (p,) in fetch(world, "SELECT file_path FROM ad_images") if not blank(p)}
    ok = {p for p in paths if classify(root, p) == "ok"}
    names = {p.removeprefix("uploads/ads/") for p in ok}
    for needle in (" ", "'", '"', "\n", "\t", "ñandú", "日本", "🚗"):
        assert any(needle in name for name in names), needle
    assert any(name.startswith("-") for name in names)
    shared = [ads_dir / n for n in names if (ads_dir / n).is_symlink()]
    assert len(shared) == 1
    assert Path(os.path.realpath(shared[0])).parent == root / "uploads/shared"
    links = {f"uploads/ads/{e.name}" for e in os.scandir(ads_dir) if e.is_symlink()}
    stray = links - paths
    assert len(stray) == 1
    now = time.time()
    assert all(now - (root / p).stat().st_mtime > 3600 for p in ok)


def test_dangling_rows_have_existing_files(world: dict[str, Any]) -> None:
    rows = fetch(
        world,
        "SELECT file_path FROM ad_images i WHERE NOT EXISTS (SELECT 1 FROM ads a WHERE a.id = i.ad_id)",
    )
    root = Path(world["uploads_root"])
    assert rows and all(classify(root, path) == "ok" for (path,) in rows)


def test_migrations_are_recorded_as_prisma_does(world: dict[str, Any]) -> None:
    rows = fetch(
        world,
        "SELECT migration_name, checksum, applied_steps_count FROM _prisma_migrations"
        " WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name",
    )
    assert rows == [(m.name, m.checksum, 1) for m in read_migrations(MIGRATIONS)]


def test_sequences_let_the_app_insert(world: dict[str, Any]) -> None:
    with psycopg.connect(world["database_url"]) as conn:
        user = conn.execute("INSERT INTO users (email) VALUES ('new@example.com') RETURNING id")
        user_id = user.fetchone()[0]  # type: ignore[index]
        ad = conn.execute(
            "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('x', 'x-1', 6, %s) RETURNING id",
            (user_id,),
        ).fetchone()
        conn.execute("INSERT INTO ad_images (ad_id, filename) VALUES (%s, 'f.webp')", ad)
        conn.rollback()


def test_same_seed_builds_the_same_world(build: Builder, world: dict[str, Any]) -> None:
    again = build(300, 0.05)
    assert strip(again) == strip(world)
    assert fingerprint(again) == fingerprint(world)
    other = build(300, 0.05, seed=2)
    assert fingerprint(other) != fingerprint(world)


def strip(truth: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in truth.items() if k not in VOLATILE}


def fingerprint(truth: dict[str, Any]) -> tuple[Any, ...]:
    """Hash every row and list every file name, so two worlds can be compared."""
    ads = fetch(truth, "SELECT md5(string_agg(a::text, '|' ORDER BY id)) FROM ads a")
    images = fetch(truth, "SELECT md5(string_agg(i::text, '|' ORDER BY id)) FROM ad_images i")
    names = sorted(os.listdir(Path(truth["uploads_root"]) / "uploads/ads"))
    return ads[0][0], images[0][0], tuple(names)


def test_zero_bad_rate_is_clean(build: Builder) -> None:
    truth = build(120, 0.0)
    assert set(truth["integrity"].values()) == {0}
    assert set(truth["files_check"].values()) == {0}
    assert truth["not_counted"] == {"fresh_upload": 0}
    assert measured_integrity(truth) == truth["integrity"]
    measured = measured_files(truth)
    assert measured == {k: truth[k] for k in ("files", "files_check", "not_counted")}


def test_tiny_world_plants_what_fits_and_says_so(build: Builder) -> None:
    truth = build(3, 0.01)
    assert measured_integrity(truth) == truth["integrity"]
    assert measured_sizes(truth) == {k: truth[k] for k in ("ads", "categories", "image_rows")}
    assert measured_files(truth)["files_check"] == truth["files_check"]
    assert truth["integrity"]["categories.name.required"] == 1
    assert truth["integrity"]["ads.slug.unique"] == 0  # one ad left cannot form a pair


def test_drop_world_removes_database_and_folders(tmp_path: Path) -> None:
    name = f"guard_test_world_{uuid.uuid4().hex[:12]}"
    root = tmp_path / "uploads"
    build_world(SERVER_URL, name, root, 5, 0.1)
    drop_world(SERVER_URL, name, root)
    with psycopg.connect(SERVER_URL) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
    assert found == []
    assert not root.exists() and not (tmp_path / "uploads-outside").exists()


@pytest.mark.parametrize(
    ("db_name", "ads", "bad_rate"),
    [
        ("guard-bad", 10, 0.1),
        ("1guard", 10, 0.1),
        ("g" * 64, 10, 0.1),
        ("guard_ok", 0, 0.1),
        ("guard_ok", 10, 0.51),
        ("guard_ok", 10, -0.1),
        ("guard_ok", 10, float("nan")),
    ],
)
def test_bad_arguments_are_refused(db_name: str, ads: int, bad_rate: float, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        build_world(SERVER_URL, db_name, tmp_path, ads, bad_rate)


def test_a_folder_no_world_made_is_not_emptied(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    name = f"guard_test_world_{uuid.uuid4().hex[:12]}"
    try:
        with pytest.raises(UsageError, match="refusing"):
            build_world(SERVER_URL, name, tmp_path, 5, 0.1)
    finally:
        drop_world(SERVER_URL, name, None)
    assert (tmp_path / "precious.txt").exists()


def test_an_existing_database_that_is_not_a_world_is_never_dropped(tmp_path: Path) -> None:
    from tests.conftest import create_database, drop_database, url_for

    name = f"guard_precious_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        with pytest.raises(UsageError, match="not a demo world"):
            build_world(SERVER_URL, name, tmp_path / "up", 5, 0.0)
        with pytest.raises(UsageError, match="not a demo world"):
            drop_world(SERVER_URL, name, None)
        with psycopg.connect(url_for(name)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not (tmp_path / "up").exists(), "nothing was reset before the refusal"
    finally:
        drop_database(name)
