"""An upload that opens but cannot be read (EIO) is named as unreadable, not as the store being unwritable."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from guard.backup.repo import objects
from guard.backup.repo.objects import ObjectStore
from guard.errors import UnreachableError


@pytest.mark.parametrize("size", [10, objects.SMALL + 10], ids=["small", "large"])
def test_an_io_error_reading_an_upload_names_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    upload = tmp_path / "pic.webp"
    upload.write_bytes(b"x" * size)
    (tmp_path / "objects").mkdir()
    (tmp_path / "tmp").mkdir()
    store = ObjectStore(tmp_path / "objects", tmp_path / "tmp")
    real_read = os.read
    source_inode = upload.stat().st_ino

    def failing_read(fd: int, n: int) -> bytes:
        if os.fstat(fd).st_ino == source_inode:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(fd, n)

    monkeypatch.setattr(objects.os, "read", failing_read)
    with pytest.raises(UnreachableError, match=r"cannot read uploads/ads/pic\.webp: Input/output error"):
        store.add_file(upload, "uploads/ads/pic.webp")
