"""Backup readers given hostile bytes: each is one ManifestError, never another exception (bench/fuzz.py)."""

from __future__ import annotations

import pytest

from guard.backup.manifest import ManifestError, PageRef, page_rows, parse

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_deeply_nested_manifest_is_a_manifest_error() -> None:
    """Found by bench/fuzz.py (manifest): json.loads raised RecursionError, a traceback."""
    with pytest.raises(ManifestError, match="not a guard backup manifest"):
        parse(DEEP, "backup x")


def test_a_deeply_nested_folder_list_is_a_manifest_error() -> None:
    page = PageRef(0, "ab" * 32, len(DEEP), 0, 0, None)
    with pytest.raises(ManifestError, match="is not the list named"):
        page_rows(DEEP, "uploads/ads", page, "backup x")
