"""The migration lint's rule ids, their default severities, and the `[migration_lint]` table changing them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from guard.errors import ConfigError

# "off" does not run the rule at all; "warn" shows its findings without failing; "error" fails.
Level = Literal["error", "warn", "off"]
LEVELS: tuple[Level, ...] = ("error", "warn", "off")

# Every rule, with what it guards against, in the order the summary lists them.
LINT_RULES: dict[str, Level] = {
    "index_not_concurrent": "error",  # CREATE INDEX (or ADD UNIQUE/PRIMARY KEY) blocks writes while it builds
    "constraint_without_not_valid": "error",  # ADD CHECK / FOREIGN KEY scans the table under its lock
    "not_null_without_check": "error",  # SET NOT NULL scans the table under ACCESS EXCLUSIVE
    "concurrently_not_alone": "error",  # fails under Prisma's native engine (one multi-statement query)
    "column_type_rewrite": "error",  # rewrites the table and its indexes under ACCESS EXCLUSIVE
    "drop_column": "error",  # the running app still reads it
    "drop_table": "error",
    "rename_column": "error",
    "rename_table": "error",
    "lock_timeout_missing": "warn",  # a lock queued behind a long query stalls every query after it
}


def lint_levels_from_toml(document: Any, *, source: str) -> dict[str, Level]:
    """Return every rule's level: the defaults, changed by `[migration_lint]` (`rule_id = "warn"`)."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: 'migration_lint' must be a table of rule_id = \"error|warn|off\"")
    levels = dict(LINT_RULES)
    for rule, level in document.items():
        if rule not in LINT_RULES:
            known = ", ".join(LINT_RULES)
            raise ConfigError(f"{source}: migration_lint: unknown rule '{rule}' (one of {known})")
        if level not in LEVELS:
            raise ConfigError(f'{source}: migration_lint: \'{rule}\' must be "error", "warn" or "off"')
        levels[rule] = level
    return levels
