"""The dump's content-defined chunks: the compiled cut and its Python twin agree, and cuts follow content."""

from __future__ import annotations

import hashlib
import random

import pytest

from guard.backup.repo import chunker

SMALL = (4 << 10, ((1 << 10) - 1) << 54, 32 << 10)  # min, mask, max: ~5 KiB chunks, fast in Python


def data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def pieces(blob: bytes, lengths: list[int]) -> list[str]:
    out, offset = [], 0
    for n in lengths:
        out.append(hashlib.sha256(blob[offset : offset + n]).hexdigest())
        offset += n
    return out


def test_the_compiled_cut_gives_the_python_twins_lengths() -> None:
    compiled = chunker._compiled()
    if compiled is None:
        pytest.skip("the C chunker was not built (no compiler at install)")
    for blob in (data(300_000), b"\0" * 100_000, data(10), b""):
        assert compiled(blob, *SMALL) == chunker.cuts_py(blob, *SMALL)
    assert chunker.implementation() == "compiled"


def test_chunks_keep_their_bounds_and_cover_the_data() -> None:
    blob = data(400_000)
    lengths = chunker.cuts_py(blob, *SMALL)
    assert sum(lengths) == len(blob)
    assert all(SMALL[0] <= n <= SMALL[2] for n in lengths[:-1])
    assert chunker.cuts_py(b"\0" * 70_000, *SMALL)[0] == SMALL[2]  # no pattern in zeros: the longest cut


def test_an_insertion_changes_only_the_chunks_next_to_it() -> None:
    blob = data(600_000)
    edited = blob[:300_000] + b"one more row\n" + blob[300_000:]
    before = pieces(blob, chunker.cuts_py(blob, *SMALL))
    after = pieces(edited, chunker.cuts_py(edited, *SMALL))
    assert len(set(before) - set(after)) <= 2
    assert len(set(before) & set(after)) >= len(before) - 2


def test_a_file_is_cut_as_its_bytes_are(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blob = data(3 << 20)
    path = tmp_path / "dump"
    path.write_bytes(blob)
    got = list(chunker.file_chunks(path))
    assert b"".join(got) == blob and [len(c) for c in got] == chunker.cuts(blob)
    (tmp_path / "empty").write_bytes(b"")
    assert list(chunker.file_chunks(tmp_path / "empty")) == []
