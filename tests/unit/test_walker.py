from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.uploads import UploadsRoot
from guard.walker import BackgroundWalk

NAMES = [
    "plain.webp",
    "with space.webp",
    "new\nline.webp",
    "tab\there.webp",
    "back\\slash.webp",
    "ñandú-日本-🚗.webp",
    os.fsdecode(b"latin1-\xe9.webp"),  # not UTF-8: round-trips as a surrogate escape
]


@pytest.fixture
def root(tmp_path: Path) -> UploadsRoot:
    ads = tmp_path / "uploads" / "ads"
    (ads / "sub" / "deeper").mkdir(parents=True)
    for name in NAMES:
        (ads / name).write_bytes(b"RIFF")
    (ads / "sub" / "deeper" / "nested\n.webp").write_bytes(b"RIFF")
    (ads / "link.webp").symlink_to(ads / "plain.webp")
    (ads / "a-directory.webp").mkdir()
    return UploadsRoot(tmp_path)


EXPECTED = {f"uploads/ads/{n}" for n in NAMES} | {"uploads/ads/sub/deeper/nested\n.webp"}


def walked(walk: BackgroundWalk) -> set[str]:
    found: list[str] = []
    for batch in walk.batches():
        found += batch
    assert len(found) == len(set(found))
    return set(found)


@pytest.fixture
def busy_thread() -> Iterator[None]:
    """A second thread running: the walk must not fork then, and walks in this process instead."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_the_forked_walk_yields_every_regular_file_under_its_exact_name(root: UploadsRoot) -> None:
    if threading.active_count() != 1:
        pytest.skip("an earlier test left a thread running, so this process must not fork")
    with BackgroundWalk(root, ("uploads/ads",)) as walk:
        assert walk._pid != 0
        assert walked(walk) == EXPECTED
    assert {"uploads/ads", "uploads/ads/sub", "uploads/ads/sub/deeper"} <= walk.record.folders
    assert {"uploads/ads/link.webp", "uploads/ads/a-directory.webp"} <= walk.record.others


def test_with_other_threads_running_the_walk_stays_in_process_with_the_same_result(
    root: UploadsRoot, busy_thread: None
) -> None:
    with BackgroundWalk(root, ("uploads/ads",)) as walk:
        assert walk._pid == 0
        assert walked(walk) == EXPECTED
    assert "uploads/ads/link.webp" in walk.record.others


def test_leaving_early_ends_and_reaps_the_child(root: UploadsRoot) -> None:
    with BackgroundWalk(root, ("uploads/ads",)) as walk:
        pid = walk._pid
    if pid == 0:
        pytest.skip("an earlier test left a thread running, so the walk did not fork")
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
