from __future__ import annotations

from pathlib import Path

import pytest

from guard.fs import paths


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("/etc/passwd", "is absolute"),
        ("/uploads/ads/x.webp", "is absolute"),
        ("uploads/ads/../../secret.webp", "has a '..' segment"),
        ("../outside.webp", "has a '..' segment"),
        ("uploads\\ads\\x.webp", "contains a backslash"),
        ("uploads/ads/x\x00.webp", "contains a NUL byte"),
    ],
)
def test_unsafe_paths_are_named(stored: str, reason: str) -> None:
    assert paths.unsafe_reason(stored) == reason


@pytest.mark.parametrize(
    "stored",
    [
        "uploads/ads/x.webp",
        "uploads/ads/a..b.webp",
        "uploads/ads/we ird 'q\".webp",
        "uploads/ads/日本.webp",
        "uploads/ads/new\nline.webp",
        "uploads/ads/-leading.webp",
    ],
)
def test_odd_but_safe_paths_are_allowed(stored: str) -> None:
    assert paths.unsafe_reason(stored) is None


def test_normalize_collapses_dots_and_slashes() -> None:
    assert paths.normalize("./uploads//ads/./x.webp") == "uploads/ads/x.webp"


@pytest.mark.parametrize(("value", "blank"), [(None, True), ("", True), ("  \t\n", True), (" a ", False)])
def test_blank(value: str | None, blank: bool) -> None:
    assert paths.is_blank(value) is blank


def test_printable_escapes_control_characters_and_undecodable_bytes() -> None:
    assert paths.printable("a\nb") == "a\\nb"
    assert "\n" not in paths.printable("x\udcff\n")
    assert paths.printable("ñandú 日本") == "ñandú 日本"


def test_json_safe_replaces_surrogates_only() -> None:
    assert paths.json_safe("ñ") == "ñ"
    assert paths.json_safe("bad\udcffname") == "bad\\xffname"


@pytest.mark.parametrize("text", ["\ud800", "a\udfff/b\udcff"])
def test_a_surrogate_no_file_name_makes_is_still_shown_and_stored(text: str) -> None:
    """Found by bench/fuzz.py (paths): a lone surrogate outside \\udc80-\\udcff (JSON's "\\ud800" in a
    manifest) raised UnicodeEncodeError from printable() and json_safe()."""
    assert paths.printable(text).isprintable()
    paths.json_safe(text).encode("utf-8")


@pytest.mark.parametrize("at_once_from", [0, 10_000])
def test_stored_paths_left_to_resolve_get_the_same_verdicts_one_by_one_or_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_once_from: int
) -> None:
    from guard.checks import files
    from guard.fs.root import UploadsRoot, WalkRecord

    monkeypatch.setattr(files, "RESOLVE_AT_ONCE_FROM", at_once_from)
    (tmp_path / "outside").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "ads").mkdir(parents=True)
    stored = set()
    for i in range(100):
        (root / "ads" / f"real-{i}").write_bytes(b"x")
        (root / "ads" / f"link-{i}").symlink_to(f"real-{i}")  # reaches a file in the root
        (root / "ads" / f"out-{i}").symlink_to(tmp_path / "outside")  # escapes it: never opened
        stored |= {f"ads/link-{i}", f"ads/out-{i}", f"ads/gone-{i}", f"../etc-{i}"}
    verdicts = files.judge_unmatched(UploadsRoot(root), stored, set(), WalkRecord())
    assert verdicts.needed == {f"ads/real-{i}" for i in range(100)}
    kinds = {path: flaw.kind for path, flaw in verdicts.bad.items()}
    assert set(kinds) == {f"ads/{k}-{i}" for k in ("out", "gone") for i in range(100)} | {
        f"../etc-{i}" for i in range(100)
    }
    assert {kinds[f"ads/gone-{i}"] for i in range(100)} == {"missing_file"}
    assert {kinds[f"../etc-{i}"] for i in range(100)} == {"unsafe_path"}
    assert len({kinds[f"ads/out-{i}"] for i in range(100)}) == 1 and kinds["ads/out-0"] != "missing_file"
