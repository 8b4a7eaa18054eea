"""The manifest's own checksum, and file names of every kind surviving its JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
import zstandard

from guard.backup.repo import manifest as manifest_module
from guard.backup.repo.manifest import (
    ZSTD_MAGIC,
    Chunk,
    DumpInfo,
    FileEntry,
    FolderRef,
    Manifest,
    ManifestError,
    MissingRef,
    PageRef,
    checksum,
    page_bytes,
    parse,
    stat_digest,
)

ODD_NAMES = (
    "uploads/ads/plain.webp",
    "uploads/ads/line\nbreak.webp",
    "uploads/ads/tab\there.webp",
    'uploads/ads/say "cheese".webp',
    "uploads/ads/日本の車 🚗.webp",
    "uploads/ads/not-utf8-\udcff\udcfe.webp",  # os.fsdecode of the bytes b"\xff\xfe"
    "uploads/ads/-leading-dash.webp",
)


def manifest() -> Manifest:
    files = tuple(FileEntry(name, "ab" * 32, 34, 1, 2, 3) for name in ODD_NAMES)
    return Manifest(
        id="20240101T020000Z-abcdef",
        started_at="s",
        finished_at="f",
        versions={"guard": "0"},
        database={"target": "database 'x' on h:5432"},
        dump=DumpInfo("database.dump", 10, "cd" * 32),
        inline_files=files,
        missing=(MissingRef("ad_images:1", "uploads/ads/gone.webp", "absent"),),
        migrations=[{"migration_name": "20240101000000_init"}],
        schema_sha256="ef" * 32,
        app_commit=None,
        scope={"scan_dirs": ["uploads/ads"]},
        counts={"files": len(files)},
    )


def test_round_trip_keeps_every_odd_name_and_field() -> None:
    original = manifest()
    data = original.to_bytes()
    data.decode("ascii")  # stored as ASCII, so undecodable names survive as escapes
    assert parse(data, "test") == original


def test_any_edit_breaks_the_checksum() -> None:
    document = json.loads(manifest().to_bytes())
    document["files"][0][2] = 35
    with pytest.raises(ManifestError, match="checksum does not match"):
        parse(json.dumps(document).encode(), "test")


def test_a_truncated_manifest_is_not_a_manifest() -> None:
    with pytest.raises(ManifestError, match="not a guard backup manifest"):
        parse(manifest().to_bytes()[:-10], "test")


def test_consistency_verdict_follows_the_missing_list() -> None:
    body = json.loads(manifest().to_bytes())
    assert body["consistency"]["ok"] is False
    assert body["consistency"]["missing"][0]["subject"] == "ad_images:1"


def test_a_flipped_byte_anywhere_in_the_body_breaks_the_checksum() -> None:
    data = bytearray(manifest().to_bytes())
    at = data.index(b"plain.webp")
    data[at] = ord("P")
    with pytest.raises(ManifestError, match="checksum does not match"):
        parse(bytes(data), "test")


def test_a_format_1_manifest_is_still_read() -> None:
    original = manifest()
    body = json.loads(original.to_bytes())
    body.pop("checksum")
    body["format"] = "guard-backup/1"
    document = {"checksum": "sha256:" + checksum(body), **body}
    assert parse(json.dumps(document).encode(), "old").files == original.files
    document["files"][0][2] = 35
    with pytest.raises(ManifestError, match="checksum does not match"):
        parse(json.dumps(document).encode(), "old")


def test_a_format_2_manifest_is_still_read_with_every_file_inline() -> None:
    original = manifest()
    body = json.loads(original.to_bytes())
    body.pop("checksum")
    body.pop("folders")
    body["format"] = "guard-backup/2"
    raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    data = b'{"checksum":"sha256:' + hashlib.sha256(raw).hexdigest().encode() + b'",' + raw[1:]
    assert parse(data, "old").files == original.files


def test_folder_lists_are_read_through_the_store_and_must_be_the_list_named() -> None:
    rows: list[tuple[Any, ...]] = [(n.rsplit("/", 1)[1], "ab" * 32, 34, 1, 2, 3) for n in ODD_NAMES]
    listing = page_bytes("uploads/ads", rows)
    sha = hashlib.sha256(listing).hexdigest()
    page = PageRef(0, sha, len(listing), len(rows), 34 * len(rows), None)
    stored = {sha: listing}
    original = replace(manifest(), inline_files=(), folders=(FolderRef("uploads/ads", 1, (page,)),))
    loaded = parse(original.to_bytes(), "test", lambda s, _size: stored[s])
    assert loaded.files == manifest().files
    stored[sha] = page_bytes("uploads/other", rows)  # a list of another folder under this name
    with pytest.raises(ManifestError, match="is not the list named"):
        _ = parse(original.to_bytes(), "test", lambda s, _size: stored[s]).files


def test_the_stat_digest_covers_every_field_of_every_file() -> None:
    rows = [("a.webp", 34, 1, 2, 3), ("b.webp", 34, 1, 2, 3)]
    digest = stat_digest(rows)
    assert stat_digest([r for r in rows]) == digest
    for i in range(5):
        changed = list(rows[1])
        changed[i] = "c.webp" if i == 0 else changed[i] + 1
        assert stat_digest([rows[0], tuple(changed)]) != digest  # type: ignore[list-item]


def test_a_manifest_file_is_a_zstd_frame_that_reads_back_with_its_dump_chunks() -> None:
    chunks = (Chunk("a1" * 32, 6), Chunk("b2" * 32, 4))
    original = replace(manifest(), dump=DumpInfo("database.dump", 10, "cd" * 32, chunks))
    stored = original.to_file()
    assert stored[:4] == ZSTD_MAGIC and len(stored) < len(original.to_bytes())
    assert parse(stored, "test") == original
    assert parse(original.to_bytes(), "test") == original  # plain JSON (every earlier version's) too


def test_chunks_that_do_not_add_up_to_the_dump_are_refused() -> None:
    bad = replace(manifest(), dump=DumpInfo("database.dump", 11, "cd" * 32, (Chunk("a1" * 32, 10),)))
    with pytest.raises(ManifestError, match="missing a field or has a bad value"):
        parse(bad.to_file(), "test")


def test_a_manifest_frame_that_inflates_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "MAX_BYTES", 100)
    with pytest.raises(ManifestError, match="larger than"):
        parse(zstandard.ZstdCompressor().compress(b" " * 10_000), "test")
    with pytest.raises(ManifestError, match="not a guard backup manifest"):
        parse(ZSTD_MAGIC + b"\0" * 20, "test")
