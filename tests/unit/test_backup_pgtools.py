"""The archive's own foreign-key statement is found, or its absence is a one-line GuardError."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard.backup import pgtools
from guard.errors import GuardError

ENTRY = "215; 2606 16420 FK CONSTRAINT public ads ads_user_id_fkey postgres"


def test_an_archive_without_the_alter_table_is_a_guard_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_statement(command: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 0, stdout="--\n-- PostgreSQL database dump\n", stderr="")

    monkeypatch.setattr(pgtools, "_run", no_statement)
    with pytest.raises(GuardError, match="no complete ALTER TABLE statement") as caught:
        pgtools._add_not_valid(Path("dump"), "postgresql://postgres@127.0.0.1/none", ENTRY)
    assert "\n" not in str(caught.value)


def test_an_unterminated_alter_table_is_a_guard_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def cut_short(command: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 0, stdout="ALTER TABLE ONLY public.ads\n", stderr="")

    monkeypatch.setattr(pgtools, "_run", cut_short)
    with pytest.raises(GuardError, match="no complete ALTER TABLE statement"):
        pgtools._add_not_valid(Path("dump"), "postgresql://postgres@127.0.0.1/none", ENTRY)


def test_client_programs_start_without_preexec_fn(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict[str, object]] = []
    real_popen = subprocess.Popen

    class Recording(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            started.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    assert "pg_dump" in pgtools.tool_version("pg_dump")
    assert started and all(kwargs.get("preexec_fn") is None for kwargs in started)


def test_a_client_program_dies_with_guard(tmp_path: Path) -> None:
    script = (
        "import sys, time; from guard.backup import pgtools; "
        "p = pgtools.spawn(['sleep', '600'], None); print(p.pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10  # the death signal is set once setpriv has run `sleep`
        while _command(child) != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _alive(child) and _command(child) == "sleep"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()


def _alive(pid: int) -> bool:
    """Tell whether pid runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def test_finishing_a_dump_that_already_ended_is_harmless_and_a_failure_still_fails() -> None:
    """pg_dump may end before its snapshot's holder looks: finishing it twice must not crash."""
    ok = subprocess.Popen(["sh", "-c", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pgtools.finish_dump(ok)
    pgtools.finish_dump(ok)
    failed = subprocess.Popen(["sh", "-c", "echo 'pg_dump: error: boom' >&2; exit 1"], stderr=subprocess.PIPE)
    with pytest.raises(GuardError, match="boom"):
        pgtools.finish_dump(failed)


def test_a_client_error_keeps_the_line_that_says_what_happened_not_its_detail() -> None:
    err = (
        b"pg_dump: error: query failed: ERROR:  invalid snapshot identifier\n"
        b"pg_dump: detail: Query was: SET TRANSACTION SNAPSHOT '00000002-1'\n"
    )
    assert "invalid snapshot identifier" in str(pgtools.tool_error("pg_dump", err))
