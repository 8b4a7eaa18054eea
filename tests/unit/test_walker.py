from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard.fs.root import UploadsRoot
from guard.fs.scan import BackgroundWalk

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


# pytest's own process may have threads left by earlier tests (and then rightly does not fork), so
# the forking side is exercised in a fresh interpreter, where this is the only thread.
FORKED = """
import json, os, sys
from pathlib import Path
from typing import Any
from guard.fs.root import UploadsRoot
from guard.fs.scan import BackgroundWalk

root = UploadsRoot(Path(sys.argv[1]))
with BackgroundWalk(root, ("uploads/ads",)) as walk:
    forked = walk._pid != 0
    found = [path for batch in walk.batches() for path in batch]
early = BackgroundWalk(root, ("uploads/ads",))
pid = early._pid
early.close()
try:
    os.waitpid(pid, os.WNOHANG)
    reaped = False
except ChildProcessError:
    reaped = True
print(json.dumps({"forked": forked, "found": found, "folders": sorted(walk.record.folders),
                  "others": sorted(walk.record.others), "early_pid": pid, "reaped": reaped}))
"""


@pytest.fixture
def forked(root: UploadsRoot) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(root.real)], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_forked_walk_yields_every_regular_file_under_its_exact_name(forked: dict[str, Any]) -> None:
    assert forked["forked"]
    assert len(forked["found"]) == len(set(forked["found"])) and set(forked["found"]) == EXPECTED
    assert {"uploads/ads", "uploads/ads/sub", "uploads/ads/sub/deeper"} <= set(forked["folders"])
    assert {"uploads/ads/link.webp", "uploads/ads/a-directory.webp"} <= set(forked["others"])


def test_leaving_early_ends_and_reaps_the_child(forked: dict[str, Any]) -> None:
    assert forked["early_pid"] != 0 and forked["reaped"]


def test_with_other_threads_running_the_walk_stays_in_process_with_the_same_result(
    root: UploadsRoot, busy_thread: None
) -> None:
    with BackgroundWalk(root, ("uploads/ads",)) as walk:
        assert walk._pid == 0
        assert walked(walk) == EXPECTED
    assert "uploads/ads/link.webp" in walk.record.others
