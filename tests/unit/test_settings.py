from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from guard.config.rules import default_rules
from guard.config.settings import Settings, load_settings
from guard.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings.database_url is None
    assert settings.scan_dirs == ("uploads/ads",)
    assert settings.orphan_grace == 600
    assert [r.id for r in settings.rules] == [r.id for r in default_rules()]


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'database_url = "postgresql://file/db"\norphan_grace = 5\n')
    settings = load_settings(
        environ={
            "GUARD_CONFIG": str(path),
            "DATABASE_URL": "postgresql://env/db",
            "UPLOADS_ROOT": "/srv/public",
            "SCAN_DIRS": "uploads/ads, uploads/avatars",
        }
    )
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://env/db"
    assert settings.orphan_grace == 5
    assert settings.uploads_root == Path("/srv/public")
    assert settings.scan_dirs == ("uploads/ads", "uploads/avatars")


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'uploads_rot = "/srv"\n')
    with pytest.raises(ConfigError, match="unknown key 'uploads_rot'"):
        load_settings(environ={}, path=path)


def test_unknown_rule_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[rules."ads.slug.format"]\npatern = "x"\n')
    with pytest.raises(ConfigError, match="rule 'ads.slug.format': unknown key 'patern'"):
        load_settings(environ={}, path=path)


def test_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ORPHAN_GRACE"):
        load_settings(environ={"ORPHAN_GRACE": "soon"})
    path = write(tmp_path, "orphan_grace = -1\n")
    with pytest.raises(ConfigError, match="'orphan_grace'"):
        load_settings(environ={}, path=path)


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(environ={}, path=write(tmp_path, "= nope"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(environ={}, path=tmp_path / "absent.toml")


def test_rules_merge_add_replace_and_disable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[rules."ads.slug.format"]
pattern = "^[a-z-]+$"
[rules."users.email.unique"]
[rules."ads.user_id.references"]
references = "users.id"
[rules."ads.title.required"]
enabled = false
""",
    )
    rules = {r.id: r for r in load_settings(environ={}, path=path).rules}
    assert rules["ads.slug.format"].pattern == "^[a-z-]+$"
    assert (rules["users.email.unique"].table, rules["users.email.unique"].column) == (
        "users",
        "email",
    )
    assert rules["ads.user_id.references"].target == "users.id"
    assert "ads.title.required" not in rules


def test_use_default_rules_false_keeps_only_file_rules(tmp_path: Path) -> None:
    path = write(tmp_path, 'use_default_rules = false\n[rules."users.email.required"]\n')
    assert [r.id for r in load_settings(environ={}, path=path).rules] == ["users.email.required"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[rules."ads.slug.shiny"]\n', "type must be one of"),
        ('[rules."x"]\ntype = "required"\n', "needs 'table' and 'column'"),
        ('[rules."ads.slug.format"]\npattern = ""\n', "'pattern' must be a non-empty string"),
        ('[rules."ads.user_id.references"]\n', "references = 'table.column'"),
    ],
)
def test_incomplete_rules_name_the_rule(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={}, path=write(tmp_path, body))


@pytest.mark.parametrize("value", ["/", "/srv/uploads", "../..", "uploads/../..", "uploads\\ads", ".", ","])
def test_scan_dirs_must_be_relative_folders_under_the_root(value: str) -> None:
    with pytest.raises(ConfigError, match="SCAN_DIRS"):
        load_settings(environ={"SCAN_DIRS": value})


def test_scan_dirs_trailing_slash_is_dropped() -> None:
    assert load_settings(environ={"SCAN_DIRS": "uploads/ads/, uploads/avatars"}).scan_dirs == (
        "uploads/ads",
        "uploads/avatars",
    )


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Found by bench/fuzz.py (settings): tomllib raised UnicodeDecodeError, a traceback."""
    path = tmp_path / "guard.toml"
    path.write_bytes(b"uploads_root = '/srv/caf\xe9'\n")  # saved as Latin-1
    with pytest.raises(ConfigError, match=r"guard\.toml: not UTF-8 text"):
        load_settings(environ={}, path=path)


@pytest.mark.parametrize("value", ["[]", "1979-05-27", "inf", "{a = 1}"])
def test_a_number_setting_of_another_toml_type_is_a_config_error(tmp_path: Path, value: str) -> None:
    """Found by bench/fuzz.py (settings): int() raised TypeError or OverflowError, a traceback."""
    with pytest.raises(ConfigError, match="'orphan_grace': invalid value"):
        load_settings(environ={}, path=write(tmp_path, f"orphan_grace = {value}\n"))


def test_a_config_file_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    """Found by bench/fuzz.py (settings): tomllib raised RecursionError, a traceback."""
    path = write(tmp_path, "orphan_grace = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"guard\.toml: invalid TOML: nested too deep"):
        load_settings(environ={}, path=path)


def test_a_folder_under_an_unknown_users_home_is_a_config_error() -> None:
    """Found by bench/fuzz.py (settings): Path.expanduser raised RuntimeError, a traceback."""
    with pytest.raises(ConfigError, match="UPLOADS_ROOT: invalid value"):
        load_settings(environ={"UPLOADS_ROOT": "~no-such-user-here/public"})


SECRETS = {
    "DATABASE_URL": "postgresql://app:hunter2-db-pw@db.internal/app",
    "SHADOW_DATABASE_URL": "postgresql://app:shadow-pw-77@db.internal/shadow",
    "SENTRY_DSN": "https://dsnkey4242@o1.ingest.example/42",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/webhook-secret-99",
}
SECRET_PARTS = ("hunter2-db-pw", "shadow-pw-77", "dsnkey4242", "webhook-secret-99")


def test_repr_and_str_of_settings_hold_no_secret() -> None:
    settings = load_settings(environ=SECRETS)
    shown = repr(settings) + str(settings)
    assert not [part for part in SECRET_PARTS if part in shown]
    assert settings.require_database_url().startswith("postgresql://app:hunter2-db-pw@")  # still usable


def test_a_wrong_typed_secret_is_not_echoed(tmp_path: Path) -> None:
    """Found by bench/fuzz.py (settings): the error line printed the value, password included."""
    path = write(tmp_path, 'database_url = ["postgresql://u:pw-in-a-list@h/db"]\n')
    with pytest.raises(ConfigError, match="'database_url'") as caught:
        load_settings(environ={}, path=path)
    assert "pw-in-a-list" not in str(caught.value)


def test_keep_counts_and_scratch_prefixes_read_the_environment_and_the_file(tmp_path: Path) -> None:
    defaults = load_settings(environ={})
    assert (defaults.keep_daily, defaults.keep_weekly, defaults.keep_monthly) == (7, 4, 6)
    assert defaults.swept_prefixes() == ("guard_shadow", "guard_drill")
    assert defaults.restore_database_prefix == "guard_restore"
    path = write(tmp_path, 'keep_weekly = 2\ndrill_database_prefix = "shop_drill"\n')
    settings = load_settings(
        environ={"GUARD_CONFIG": str(path), "KEEP_DAILY": "3", "RESTORE_DATABASE_PREFIX": "shop_restore"}
    )
    assert (settings.keep_daily, settings.keep_weekly, settings.keep_monthly) == (3, 2, 6)
    assert settings.swept_prefixes() == ("guard_shadow", "shop_drill")
    assert settings.restore_database_prefix == "shop_restore"


@pytest.mark.parametrize(
    "environ, named",
    [
        ({"DRILL_DATABASE_PREFIX": "Shop"}, "DRILL_DATABASE_PREFIX: invalid value 'Shop'"),
        ({"SHADOW_DATABASE_PREFIX": "a" * 41}, "SHADOW_DATABASE_PREFIX: invalid value"),
        ({"RESTORE_DATABASE_PREFIX": "x; DROP"}, "RESTORE_DATABASE_PREFIX: invalid value 'x; DROP'"),
        # a restore is kept for the operator: a prefix the sweep also drops is refused, either way round
        ({"RESTORE_DATABASE_PREFIX": "guard_drill"}, "RESTORE_DATABASE_PREFIX: invalid value 'guard_drill'"),
        (
            {"SHADOW_DATABASE_PREFIX": "guard_restore"},
            "'restore_database_prefix': invalid value 'guard_restore'",
        ),
        ({"KEEP_MONTHLY": "-1"}, "KEEP_MONTHLY: invalid value '-1' (expected a non-negative integer)"),
    ],
)
def test_a_bad_prefix_or_keep_count_is_one_line_naming_it(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert str(caught.value).startswith(named) and "\n" not in str(caught.value)


def test_a_stale_threshold_a_living_process_crosses_between_heartbeats_is_refused() -> None:
    with pytest.raises(ValidationError, match="more than twice HEARTBEAT_SECONDS"):
        Settings(heartbeat_seconds=30)
    assert Settings(heartbeat_seconds=30, heartbeat_stale_seconds=90).heartbeat_stale_seconds == 90


def test_an_invalid_backup_remotes_is_refused_without_printing_it(tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('backup_remotes = [":sftp,host=h,pass=s3cr3t:guard", 7]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, path=config)
    assert "backup_remotes" in str(caught.value) and "s3cr3t" not in str(caught.value)
