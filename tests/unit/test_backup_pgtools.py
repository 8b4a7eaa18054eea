"""The archive's own foreign-key statement is found, or its absence is a one-line GuardError."""

from __future__ import annotations

import subprocess
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


def test_finishing_a_dump_that_already_ended_is_harmless_and_a_failure_still_fails() -> None:
    """pg_dump may end before its snapshot's holder looks: finishing it twice must not crash."""
    ok = subprocess.Popen(["sh", "-c", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pgtools.finish_dump(ok)
    pgtools.finish_dump(ok)
    failed = subprocess.Popen(["sh", "-c", "echo 'pg_dump: error: boom' >&2; exit 1"], stderr=subprocess.PIPE)
    with pytest.raises(GuardError, match="boom"):
        pgtools.finish_dump(failed)
