from __future__ import annotations

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
