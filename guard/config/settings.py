"""One settings object for the whole program: defaults, then an optional TOML file, then the environment."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from guard.config.dburl import libpq_conninfo
from guard.config.rules import Rule, default_rules, rules_from_toml
from guard.config.severities import LINT_RULES, Level, lint_levels_from_toml
from guard.errors import ConfigError
from guard.fs.paths import normalize, unsafe_reason


def _count(raw: Any) -> Any:
    """Refuse booleans and negative numbers before pydantic reads an int."""
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a count")
    if isinstance(raw, str):
        raw = raw.strip()
    if isinstance(raw, int | str) and int(raw) < 0:
        raise ValueError("negative")
    return raw


def _folders(raw: Any) -> Any:
    """Split SCAN_DIRS at commas and keep only plain relative folders under the uploads root."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("not a list of folders")
    folders = tuple(i.strip().rstrip("/") for i in items if i.strip())
    if not folders or not all(_is_relative_folder(f) for f in folders):
        raise ValueError("not relative folders")
    return folders


def _expand(path: Path) -> Path:
    """Expand ~ in a folder setting; an unknown user's home is a bad value, not a traceback."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ValueError("unknown user") from None


def _slug_template(raw: str) -> str:
    """Accept a template naming {id} (so every slug is unique) and at most {title} besides."""
    names = {name for _, name, _, _ in string.Formatter().parse(raw) if name is not None}
    if not names <= {"title", "id"} or "id" not in names:
        raise ValueError("a slug template names {id} and at most {title}")
    return raw


def _scratch_prefix(raw: str) -> str:
    """Accept a prefix that leaves room in a 63-byte name for `_<UTC time>_<random>` and needs no quotes."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", raw):
        raise ValueError("not a scratch database prefix")
    return raw


def _restore_prefix(raw: str, info: ValidationInfo) -> str:
    """Refuse a restore prefix the stale-scratch sweep also drops: a restore is kept for the operator."""
    if raw in (info.data.get("shadow_database_prefix"), info.data.get("drill_database_prefix")):
        raise ValueError("the restore prefix is swept with the shadow's or drill's")
    return raw


def _stale_after(raw: int, info: ValidationInfo) -> int:
    """Refuse a stale threshold a living process would cross between two heartbeats."""
    every = info.data.get("heartbeat_seconds")
    if isinstance(every, int) and raw <= 2 * every:
        raise ValueError("must be more than twice HEARTBEAT_SECONDS")
    return raw


def _regex(raw: str) -> str:
    """Accept a regular expression Python compiles (the ad route `guard report` matches log paths with)."""
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return raw


def _remotes(raw: Any) -> Any:
    """Split BACKUP_REMOTES at whitespace (rclone connection strings hold commas); a TOML list as is."""
    items = raw.split() if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i.strip() for i in items):
        raise ValueError("not a list of rclone remote paths")
    return tuple(i.strip() for i in items)


Count = Annotated[int, BeforeValidator(_count)]
ScratchPrefix = Annotated[str, AfterValidator(_scratch_prefix)]
Folders = Annotated[tuple[str, ...], BeforeValidator(_folders)]
Folder = Annotated[Path, AfterValidator(_expand)]
Remotes = Annotated[tuple[str, ...], BeforeValidator(_remotes)]


class Settings(BaseSettings):
    """Everything guard is configured with; each scalar also reads the environment variable NAME."""

    # A bare Settings(...) reads only its arguments; load_settings() adds the TOML file and the environment.
    model_config = SettingsConfigDict(frozen=True, extra="forbid", strict=False, validate_default=False)

    database_url: SecretStr | None = None
    uploads_root: Folder | None = None
    scan_dirs: Folders = ("uploads/ads",)
    orphan_grace: Count = 600
    file_table: str = "ad_images"
    file_column: str = "file_path"
    migrations_dir: Folder | None = None
    shadow_database_url: SecretStr | None = None
    backup_dir: Folder | None = None
    backup_remotes: Remotes = ()  # rclone remote paths the nightly copy sends backups to
    # where `restore --from` fetches a remote's backup to (default ~/.cache/guard/remotes)
    backup_cache_dir: Folder | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    sentry_dsn: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    # A dispatched change not processed within the lease is sent again; it outlives a check_rows task's
    # whole retry schedule (8 retries, backoff capped at 60 s: 183 s of waiting), so a busy or retrying
    # worker's rows are not sent twice. After outbox_max_attempts sends a row is parked as dead.
    lease_seconds: Count = 600
    outbox_max_attempts: Count = 5
    # Redis gives a message a worker took but has not acknowledged (late acks) to another worker after
    # visibility_timeout; no task may run, or wait for its countdown, that long (workers/app.py).
    visibility_timeout: Count = 7200
    task_time_limit: Count = 3600  # hard limit of any one task run; the soft limit is a minute earlier
    outbox_batch: Count = 500
    slack_digest_seconds: Count = 60
    watch_reconcile_seconds: Count = 300
    # The listener re-reads the schema fingerprint this often (and after every reconnect); a change runs
    # the migrations and drift checks at once (watchers/restores.py). capture_auto_install lets it put
    # back missing capture triggers itself, as `guard install` would.
    schema_watch_seconds: Count = 2
    capture_auto_install: bool = False
    broker_prefix: str = ""
    sweep_cron: str = "0 * * * *"
    daily_cron: str = "30 3 * * *"
    backup_cron: str = "0 2 * * *"
    prune_cron: str = "30 2 * * *"
    drill_cron: str = "0 4 * * 0"
    # The keep counts of beat's prune and the defaults of `guard backup prune` (restic's keep-* meaning).
    keep_daily: Count = 7
    keep_weekly: Count = 4
    keep_monthly: Count = 6
    # Scratch databases are named <prefix>_<UTC time>_<random>. A stale shadow or drill copy (a killed
    # run's) is swept by its prefix; a restore's new database is kept for the operator, so its prefix must
    # differ from both (declared after them, and always validated: its check reads theirs).
    shadow_database_prefix: ScratchPrefix = "guard_shadow"
    drill_database_prefix: ScratchPrefix = "guard_drill"
    restore_database_prefix: Annotated[
        str, AfterValidator(_scratch_prefix), AfterValidator(_restore_prefix)
    ] = Field(default="guard_restore", validate_default=True)
    # Liveness (guard/continuous/liveness.py): every process records a heartbeat this often; one older
    # than heartbeat_stale_seconds is stale in `guard status`. Beat sends a canary through the whole
    # pipeline every canary_seconds; none through for canary_stall_seconds opens pipeline_stalled.
    heartbeat_seconds: Count = 5
    heartbeat_stale_seconds: Annotated[Count, AfterValidator(_stale_after)] = Field(
        default=15, validate_default=True
    )
    canary_seconds: Count = 60
    canary_stall_seconds: Count = 300
    # History for the weekly numbers (guard/history/): kept this many days; beat's daily snapshot of
    # the ratios' counts, its weekly Slack report, and the access log(s) and ad route `guard report` reads.
    history_days: Count = 400
    snapshot_cron: str = "45 23 * * *"
    report_cron: str = "0 8 * * 1"
    access_log: str | None = None
    ad_route: Annotated[str, AfterValidator(_regex)] = r"^/ad/[^/]+/?$"
    slug_template: Annotated[str, AfterValidator(_slug_template)] = "{title}-{id}"  # guard repair slugs
    rules: tuple[Rule, ...] = tuple(default_rules())
    # The migration lint's level per rule id (the `[migration_lint]` table; guard/config/severities.py).
    migration_lint: dict[str, Level] = Field(default_factory=lambda: dict(LINT_RULES))
    # `guard serve` (guard/web/): the token every page but /healthz asks for (required to bind an
    # address other than loopback), how long one reading of the numbers is reused, the page's refresh.
    guard_web_token: SecretStr | None = None
    web_cache_seconds: Count = 5
    web_refresh_seconds: Count = 30

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read only the arguments: load_settings() passes the file and the environment in, merged."""
        return (init_settings,)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed, validated as any other (a str URL becomes secret)."""
        try:
            return type(self)(**{**dict(self), **changes})
        except ValidationError as exc:
            raise _config_error(exc, changes, {}) from None

    def require_database_url(self) -> str:
        """Return the database URL or fail with the setting's name."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (environment or 'database_url' in GUARD_CONFIG)")
        # also takes Prisma's ?schema= and postgresql+driver://
        return libpq_conninfo(self.database_url.get_secret_value())

    def shadow_url(self) -> str | None:
        """Return SHADOW_DATABASE_URL as libpq reads it, when it is set."""
        if not self.shadow_database_url:
            return None
        return libpq_conninfo(self.shadow_database_url.get_secret_value(), "SHADOW_DATABASE_URL")

    def require_uploads_root(self) -> Path:
        """Return the uploads root or fail with the setting's name."""
        if self.uploads_root is None:
            raise ConfigError("UPLOADS_ROOT is not set (environment or 'uploads_root' in GUARD_CONFIG)")
        return self.uploads_root

    def require_migrations_dir(self) -> Path:
        """Return the Prisma migrations folder or fail with the setting's name."""
        if self.migrations_dir is None:
            raise ConfigError("MIGRATIONS_DIR is not set (environment or 'migrations_dir' in GUARD_CONFIG)")
        return self.migrations_dir

    def swept_prefixes(self) -> tuple[str, ...]:
        """Return the prefixes of the scratch databases a killed run may leave for the sweep to drop."""
        return (self.shadow_database_prefix, self.drill_database_prefix)

    def secret_values(self) -> tuple[str, ...]:
        """Return every secret's text and its password, for scrubbers that must never let them out."""
        found: list[str] = []
        for name in SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value():
                found.extend(_secret_parts(secret.get_secret_value()))
        return tuple(dict.fromkeys(found))


SECRET_FIELDS = ("database_url", "shadow_database_url", "sentry_dsn", "slack_webhook_url", "guard_web_token")
_TABLES = ("rules", "migration_lint")
_SCALARS = tuple(name for name in Settings.model_fields if name not in _TABLES)
_TABLE_KEYS = {*_TABLES, "use_default_rules"}


class _EnvironSource(PydanticBaseSettingsSource):
    """The environment (or a given mapping): each scalar from its upper-case NAME, when not empty."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the raw text of NAME, the key it came from, and that it is not complex."""
        return self.environ.get(field_name.upper()), field_name.upper(), False

    def __call__(self) -> dict[str, Any]:
        return {name: raw for name in _SCALARS if (raw := self.environ.get(name.upper()))}


class _TomlSource(PydanticBaseSettingsSource):
    """The scalars of a parsed GUARD_CONFIG document (the rules table is read by guard/config/rules.py)."""

    def __init__(self, settings_cls: type[BaseSettings], document: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self.document = document

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the TOML value of the key, the key, and that it is not complex."""
        return self.document.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {name: self.document[name] for name in _SCALARS if name in self.document}


def load_settings(environ: Mapping[str, str] | None = None, path: Path | None = None) -> Settings:
    """Build the settings from GUARD_CONFIG (or path) and the environment; the environment wins."""
    env = os.environ if environ is None else environ
    config_path = path or (Path(env["GUARD_CONFIG"]) if env.get("GUARD_CONFIG") else None)
    document: dict[str, Any] = {}
    rules = default_rules()
    lint = dict(LINT_RULES)
    if config_path is not None:
        document = _read_toml(config_path)
        unknown = sorted(set(document) - set(_SCALARS) - _TABLE_KEYS)
        if unknown:
            raise ConfigError(f"{config_path}: unknown key '{unknown[0]}'")
        base = rules if document.get("use_default_rules", True) else []
        rules = rules_from_toml(document.get("rules", {}), base, source=str(config_path))
        lint = lint_levels_from_toml(document.get("migration_lint", {}), source=str(config_path))
    from_file = _TomlSource(Settings, document)()
    from_env = _EnvironSource(Settings, env)()
    try:
        return Settings(**{**from_file, **from_env}, rules=tuple(rules), migration_lint=lint)
    except ValidationError as exc:
        raise _config_error(exc, {**from_file, **from_env}, from_env) from None


def _config_error(
    exc: ValidationError, values: Mapping[str, Any], from_env: Mapping[str, Any]
) -> ConfigError:
    """Name the first bad key the way the user wrote it: NAME in the environment, 'name' in the file."""
    name = str(exc.errors()[0]["loc"][0])
    source = name.upper() if name in from_env else f"'{name}'"
    given = values.get(name, exc.errors()[0].get("input"))  # a default checked against another setting
    # A secret's value is never printed, nor BACKUP_REMOTES (an rclone connection string holds passwords).
    shown = "" if name in (*SECRET_FIELDS, "backup_remotes") else f" {given!r}"
    return ConfigError(f"{source}: invalid value{shown} (expected {_describe(name)})")


def _read_toml(path: Path) -> dict[str, Any]:
    # Imported here: its parser compiles its regular expressions at import (about 10 ms of every
    # command's start-up), and most runs read no file.
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (TOML files are UTF-8)") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deep") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _secret_parts(text: str) -> list[str]:
    """Return a secret's whole text and, for a URL with credentials, its password and user:password."""
    parts = [text]
    head, sep, _ = text.partition("@")
    if sep and "://" in head:
        userinfo = head.split("://", 1)[1]
        parts.append(userinfo)
        password = userinfo.partition(":")[2]
        if len(password) >= 4:  # a one-letter password would scrub every such letter in the event
            parts.append(password)
    return [p for p in parts if p]


def _is_relative_folder(folder: str) -> bool:
    """Tell whether a scanned folder is a plain relative path under the uploads root."""
    return bool(folder) and unsafe_reason(folder) is None and normalize(folder) == folder != "."


def _describe(name: str) -> str:
    annotation = str(Settings.model_fields[name].metadata) + str(Settings.model_fields[name].annotation)
    if name == "slug_template":
        return "a template naming {id} and at most {title}, such as {title}-{id}"
    if name.endswith("_database_prefix"):
        return (
            "a lower-case letter, then up to 39 lower-case letters, digits or _; the restore prefix "
            "differs from the shadow's and the drill's"
        )
    if name == "heartbeat_stale_seconds":
        return "a number of seconds more than twice HEARTBEAT_SECONDS"
    if name == "ad_route":
        return "a regular expression over a request's path, such as ^/ad/[^/]+/?$"
    if name == "scan_dirs":
        return "relative folders under the uploads root, such as uploads/ads"
    if "int" in annotation:
        return "a non-negative integer"
    return "a string"
