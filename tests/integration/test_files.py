from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from guard.checks import CheckContext, files
from guard.config.settings import load_settings
from guard.db import psqlcopy
from guard.db.database import Database
from guard.errors import UnreachableError
from guard.fs import pathsets

pytestmark = pytest.mark.integration

OLD = time.time() - 7200
ODD_NAMES = [
    "with space.webp",
    "quote'single.webp",
    'quote"double.webp',
    "new\nline.webp",
    "tab\there.webp",
    "ñandú-日本-🚗.webp",
    "-leading-dash.webp",
    "back`tick$(x).webp",
]


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Path:
    """An uploads root whose rows and files disagree in every way the check knows."""
    root = tmp_path / "public"
    ads = root / "uploads" / "ads"
    ads.mkdir(parents=True)
    (root / "uploads" / "shared").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.webp").write_bytes(b"secret")
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 'A', 'a-1', 1, 1)")
    rows: list[str | None] = []

    def present(rel: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
        os.utime(path, (OLD, OLD))

    for name in ODD_NAMES:
        present(f"uploads/ads/{name}")
        rows.append(f"uploads/ads/{name}")
    rows += ["uploads/ads/missing one.webp", "uploads/ads/gone\n'x'.webp"]  # 2 missing
    rows += ["/etc/passwd", "uploads/ads/../../secret.webp", "uploads\\ads\\x.webp"]  # 3 unsafe
    (ads / "escape.webp").symlink_to(outside / "secret.webp")
    rows.append("uploads/ads/escape.webp")  # unsafe (symlink)
    present("uploads/shared/inside.webp")
    (ads / "inside-link.webp").symlink_to(root / "uploads" / "shared" / "inside.webp")
    rows.append("uploads/ads/inside-link.webp")  # fine
    (ads / "unreferenced-link.webp").symlink_to(outside / "secret.webp")  # not an orphan
    rows += [None, "  "]  # integrity's job
    rows.append("./uploads//ads/with space.webp")  # same file, fine
    present("uploads/ads/orphan old.webp")  # orphan
    present("uploads/ads/sub/dir/orphan\n.webp")  # orphan, nested
    (ads / "fresh upload.webp").write_bytes(b"RIFF")  # within grace
    (ads / "a-directory.webp").mkdir()
    rows.append("uploads/ads/a-directory.webp")  # missing: not a file
    for n, path in enumerate(rows, start=1):
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (%s, 1, 'f', %s)",
            (n, path),
        )
    return root


def run(db_url: str, root: Path, **changes: object) -> object:
    settings = load_settings(environ={"DATABASE_URL": db_url, "UPLOADS_ROOT": str(root)})
    return files.run(CheckContext(settings.replace(**changes), limit=100))


def by_kind(result: object) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in result.findings:  # type: ignore[attr-defined]
        found.setdefault(f.kind, set()).add(f.path)
    return found


def test_every_kind_is_found_exactly(db_url: str, world: Path) -> None:
    result = run(db_url, world)
    assert result.counts == {"missing_file": 3, "orphan_file": 2, "unsafe_path": 4}  # type: ignore[attr-defined]
    found = by_kind(result)
    assert found["missing_file"] == {
        "uploads/ads/missing one.webp",
        "uploads/ads/gone\n'x'.webp",
        "uploads/ads/a-directory.webp",
    }
    assert found["orphan_file"] == {
        "uploads/ads/orphan old.webp",
        "uploads/ads/sub/dir/orphan\n.webp",
    }
    assert found["unsafe_path"] == {
        "/etc/passwd",
        "uploads/ads/../../secret.webp",
        "uploads\\ads\\x.webp",
        "uploads/ads/escape.webp",
    }


def test_grace_zero_makes_fresh_uploads_orphans(db_url: str, world: Path) -> None:
    result = run(db_url, world, orphan_grace=0)
    assert "uploads/ads/fresh upload.webp" in by_kind(result)["orphan_file"]


def test_unsafe_paths_are_never_opened(db_url: str, world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []
    real = os.path.realpath

    def spy(path: object, *args: object, **kwargs: object) -> str:
        touched.append(str(path))
        return real(path, *args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(os.path, "realpath", spy)
    run(db_url, world)
    assert not [p for p in touched if "passwd" in p or ".." in p or "\\" in p]


def test_missing_uploads_root_is_unreachable(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(UnreachableError, match="uploads root"):
        run(db_url, tmp_path / "nowhere")


def test_more_scanned_folders(db_url: str, world: Path) -> None:
    result = run(db_url, world, scan_dirs=("uploads/ads", "uploads/shared"))
    assert result.counts["orphan_file"] == 2  # type: ignore[attr-defined]


def test_a_scanned_folder_reached_through_a_symlink_is_never_walked(
    db_url: str, world: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "old.webp").write_bytes(b"RIFF")
    os.utime(elsewhere / "old.webp", (OLD, OLD))
    (world / "uploads" / "linked").symlink_to(elsewhere)
    result = run(db_url, world, scan_dirs=("uploads/ads", "uploads/linked"))
    assert "uploads/linked/old.webp" not in by_kind(result)["orphan_file"]
    assert result.counts["orphan_file"] == 2  # type: ignore[attr-defined]


def test_a_missing_scanned_folder_is_unreachable_not_silently_empty(db_url: str, world: Path) -> None:
    with pytest.raises(UnreachableError, match="uploads/avtars"):
        run(db_url, world, scan_dirs=("uploads/ads", "uploads/avtars"))


def test_a_file_deleted_after_the_walk_is_not_an_orphan_and_not_an_error(
    db_url: str, world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_lstat = os.lstat

    def vanished(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path).endswith("orphan old.webp"):
            raise FileNotFoundError(path)
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", vanished)
    result = run(db_url, world)
    assert by_kind(result)["orphan_file"] == {"uploads/ads/sub/dir/orphan\n.webp"}


def test_examples_are_the_first_rows_in_key_order_and_counts_stay_exact(db_url: str, world: Path) -> None:
    settings = load_settings(environ={"DATABASE_URL": db_url, "UPLOADS_ROOT": str(world)})
    result = files.run(CheckContext(settings, limit=1))
    assert result.counts == {"missing_file": 3, "orphan_file": 2, "unsafe_path": 4}
    missing = [f.subject for f in result.findings if f.kind == "missing_file"]
    assert missing == ["ad_images:9"]  # rows 9, 10 and 19: by key, not by its text ('10' < '9')


def test_read_through_psycopg_when_psql_is_missing_finds_the_same(
    db_url: str, world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    through_psql = run(db_url, world)
    monkeypatch.setattr(psqlcopy.shutil, "which", lambda _: None)
    through_psycopg = run(db_url, world)
    assert through_psycopg.counts == through_psql.counts  # type: ignore[attr-defined]
    assert through_psycopg.findings == through_psql.findings  # type: ignore[attr-defined]


@pytest.mark.parametrize("through", ["psql", "psycopg"])
def test_the_pure_python_twins_find_exactly_what_the_compiled_ones_find(
    db_url: str, world: Path, monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    if through == "psycopg":
        monkeypatch.setattr(psqlcopy.shutil, "which", lambda _: None)
    assert pathsets.implementation() == "compiled"
    compiled = run(db_url, world)
    monkeypatch.setattr(pathsets, "COMPILED", False)
    monkeypatch.setattr(pathsets, "list_folder", pathsets.list_folder_py)
    assert pathsets.implementation() == "python"
    python = run(db_url, world)
    assert python.counts == compiled.counts == {"missing_file": 3, "orphan_file": 2, "unsafe_path": 4}  # type: ignore[attr-defined]
    assert python.findings == compiled.findings  # type: ignore[attr-defined]


def test_every_stored_spelling_comes_back_from_psql_exactly(db: Database, db_url: str) -> None:
    values = [
        "plain",
        "back\\slash",
        "new\nline",
        "tab\there",
        "cr\rhere",
        "\\N",
        "ñandú-🚗",
        "\b\f\v",
        "\\\\n",
    ]
    db.execute("CREATE TABLE spellings (v text)")
    for value in values:
        db.execute("INSERT INTO spellings (v) VALUES (%s)", (value,))
    env = psqlcopy.psql_environment(db_url)
    assert env is not None
    read = [v for chunk in psqlcopy.copy_values(env, "SELECT v FROM spellings") for v in chunk]
    assert sorted(read) == sorted(values)


def test_a_failing_psql_read_is_an_error_not_a_short_list(db_url: str) -> None:
    env = psqlcopy.psql_environment(db_url)
    assert env is not None
    with pytest.raises(UnreachableError, match="psql could not read"):
        list(psqlcopy.copy_values(env, "SELECT no_such_column FROM ad_images"))
