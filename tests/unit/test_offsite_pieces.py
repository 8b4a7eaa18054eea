"""Pure pieces of the off-site copy: what is shown of a remote, content lists from a remote, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.backup.remote.layout import Content
from guard.backup.remote.mirror import cache_folder
from guard.backup.remote.rclone import _clean, display
from guard.config.settings import Settings
from guard.errors import ConfigError, GuardError

ID = "20250101T020000Z-1a2b3c"


@pytest.mark.parametrize(
    ("remote", "shown"),
    [
        ("offsite:guard/repo", "offsite:guard/repo"),
        (":sftp,host=example.org,user=u,pass=hunter2:backups", ":sftp:backups"),
        ("b2,account=abc,key=s3cret:bucket/guard", "b2:bucket/guard"),
        ("/srv/offsite/guard", "/srv/offsite/guard"),
        ("secret:", "secret:"),
    ],
)
def test_a_remote_is_shown_without_its_connection_parameters(remote: str, shown: str) -> None:
    assert display(remote) == shown


def test_an_rclone_message_loses_the_remote_parameters_and_any_password() -> None:
    remote = ":s3,access_key_id=AKIA,secret_access_key=abcd1234:bucket"
    message = f"Failed to copy: {remote}/packs/x: pass=hunter2 token=tok123 denied"
    cleaned = _clean(message, remote)
    assert "abcd1234" not in cleaned and "hunter2" not in cleaned and "tok123" not in cleaned
    assert ":s3:bucket/packs/x" in cleaned and "\n" not in cleaned


def test_a_content_list_round_trips_and_refuses_paths_outside_the_repository() -> None:
    content = Content(ID, {f"packs/{'a' * 32}.pack": 10, f"objects/ab/{'ab' * 32}": 3})
    assert Content.parse(content.to_bytes(), ID) == content
    for bad in ("../../etc/passwd", f"backups/{ID}/../../x", "packs/x.pack", "/etc/shadow"):
        hostile = Content(ID, {bad: 1}).to_bytes()
        with pytest.raises(GuardError, match="content list on the remote is damaged"):
            Content.parse(hostile, ID)
    with pytest.raises(GuardError):
        Content.parse(content.to_bytes(), "20250101T020000Z-ffffff")  # another backup's list
    with pytest.raises(GuardError):
        Content.parse(b"{not json", ID)


def test_backup_remotes_split_at_whitespace_and_keep_commas() -> None:
    settings = Settings(backup_remotes="offsite:guard  :sftp,host=h:repo\n/srv/copy")
    assert settings.backup_remotes == ("offsite:guard", ":sftp,host=h:repo", "/srv/copy")
    assert Settings(backup_remotes=["a:b"]).backup_remotes == ("a:b",)
    with pytest.raises(ConfigError):
        Settings().replace(backup_remotes=[3])


def test_the_cache_keeps_the_operators_own_folder_mode_and_makes_its_own_private(tmp_path: Path) -> None:
    shared = tmp_path / "var-cache"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    folder = cache_folder(shared, "offsite:guard")
    assert shared.stat().st_mode & 0o777 == 0o755  # not guard's to change
    assert folder.parent == shared and folder.stat().st_mode & 0o777 == 0o700
    made = cache_folder(tmp_path / "new" / "cache", "offsite:guard")
    assert made.parent.stat().st_mode & 0o777 == 0o700
