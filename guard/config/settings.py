"""One settings object for the whole program: defaults, then an optional TOML file, then the environment."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.config.dburl import libpq_conninfo
from guard.config.rules import Rule, default_rules, rules_from_toml
from guard.errors import ConfigError
from guard.fs.paths import normalize, unsafe_reason


@dataclass(frozen=True)
class Settings:
    """Everything guard is configured with; each scalar also reads the environment variable NAME."""

    database_url: str | None = None
    uploads_root: Path | None = None
    scan_dirs: tuple[str, ...] = ("uploads/ads",)
    orphan_grace: int = 600
    file_table: str = "ad_images"
    file_column: str = "file_path"
    migrations_dir: Path | None = None
    shadow_database_url: str | None = None
    backup_dir: Path | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    sentry_dsn: str | None = None
    slack_webhook_url: str | None = None
    # A dispatched change not processed within the lease is sent again; it outlives a check_rows task's
    # whole retry schedule (8 retries, backoff capped at 60 s: 183 s of waiting), so a busy or retrying
    # worker's rows are not sent twice. After outbox_max_attempts sends a row is parked as dead.
    lease_seconds: int = 600
    outbox_max_attempts: int = 5
    # Redis gives a message a worker took but has not acknowledged (late acks) to another worker after
    # visibility_timeout; no task may run, or wait for its countdown, that long (workers/app.py).
    visibility_timeout: int = 7200
    task_time_limit: int = 3600  # hard limit of any one task run; the soft limit is a minute earlier
    outbox_batch: int = 500
    slack_digest_seconds: int = 60
    watch_reconcile_seconds: int = 300
    broker_prefix: str = ""
    sweep_cron: str = "0 * * * *"
    daily_cron: str = "30 3 * * *"
    backup_cron: str = "0 2 * * *"
    prune_cron: str = "30 2 * * *"
    drill_cron: str = "0 4 * * 0"
    rules: tuple[Rule, ...] = field(default_factory=lambda: tuple(default_rules()))

    def require_database_url(self) -> str:
        """Return the database URL or fail with the setting's name."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (environment or 'database_url' in GUARD_CONFIG)")
        return libpq_conninfo(self.database_url)  # also takes Prisma's ?schema= and postgresql+driver://

    def shadow_url(self) -> str | None:
        """Return SHADOW_DATABASE_URL as libpq reads it, when it is set."""
        if not self.shadow_database_url:
            return None
        return libpq_conninfo(self.shadow_database_url, "SHADOW_DATABASE_URL")

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


_SCALARS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "rules"}
_TABLE_KEYS = {"rules", "use_default_rules"}


def load_settings(environ: Mapping[str, str] | None = None, path: Path | None = None) -> Settings:
    """Build the settings from GUARD_CONFIG (or path) and the environment; the environment wins."""
    env = os.environ if environ is None else environ
    config_path = path or (Path(env["GUARD_CONFIG"]) if env.get("GUARD_CONFIG") else None)
    values: dict[str, Any] = {}
    rules = default_rules()
    if config_path is not None:
        document = _read_toml(config_path)
        unknown = sorted(set(document) - set(_SCALARS) - _TABLE_KEYS)
        if unknown:
            raise ConfigError(f"{config_path}: unknown key '{unknown[0]}'")
        for name, raw in document.items():
            if name in _SCALARS:
                values[name] = _coerce(name, raw, from_env=False)
        base = rules if document.get("use_default_rules", True) else []
        rules = rules_from_toml(document.get("rules", {}), base, source=str(config_path))
    for name in _SCALARS:
        raw = env.get(name.upper())
        if raw not in (None, ""):
            values[name] = _coerce(name, raw, from_env=True)
    return Settings(rules=tuple(rules), **values)


def _read_toml(path: Path) -> dict[str, Any]:
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


def _coerce(name: str, raw: Any, *, from_env: bool) -> Any:
    """Turn a TOML or environment value into the field's type, or fail naming the key."""
    kind = str(_SCALARS[name].type)
    try:
        if "int" in kind:
            if isinstance(raw, bool):
                raise ValueError
            value = int(raw)
            if value < 0:
                raise ValueError
            return value
        if "tuple" in kind:
            items = raw.split(",") if from_env and isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError
            folders = tuple(i.strip().rstrip("/") for i in items if i.strip())
            if not folders or not all(_is_relative_folder(f) for f in folders):
                raise ValueError
            return folders
        if not isinstance(raw, str):
            raise ValueError
        return Path(raw).expanduser() if "Path" in kind else raw
    # TOML may give a list, a date or inf for a number; expanduser fails for "~nosuchuser"
    except (ValueError, TypeError, OverflowError, RuntimeError):
        source = name.upper() if from_env else f"'{name}'"
        raise ConfigError(f"{source}: invalid value {raw!r} (expected {_describe(kind)})") from None


def _is_relative_folder(folder: str) -> bool:
    """Tell whether a scanned folder is a plain relative path under the uploads root."""
    return bool(folder) and unsafe_reason(folder) is None and normalize(folder) == folder != "."


def _describe(kind: str) -> str:
    if "int" in kind:
        return "a non-negative integer"
    if "tuple" in kind:
        return "relative folders under the uploads root, such as uploads/ads"
    return "a string"
