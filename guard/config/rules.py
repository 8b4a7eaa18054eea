"""Declarative row rules: required, format, unique, references."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from guard.errors import ConfigError

RULE_TYPES = ("required", "format", "unique", "references")
SLUG_PATTERN = "^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$"


@dataclass(frozen=True)
class Rule:
    """One rule on one column; `target` is 'table.column' for references."""

    id: str
    table: str
    column: str
    type: str
    pattern: str | None = None
    target: str | None = None

    @property
    def target_table(self) -> str:
        return (self.target or "").rsplit(".", 1)[0]

    @property
    def target_column(self) -> str:
        return (self.target or "").rsplit(".", 1)[-1]


def default_rules() -> list[Rule]:
    """Return the seed's rules: the slugs, titles and paths its incidents broke."""
    return [
        Rule("ads.slug.required", "ads", "slug", "required"),
        Rule("ads.slug.format", "ads", "slug", "format", pattern=SLUG_PATTERN),
        Rule("ads.slug.unique", "ads", "slug", "unique"),
        Rule("ads.title.required", "ads", "title", "required"),
        Rule("categories.name.required", "categories", "name", "required"),
        Rule("ad_images.file_path.required", "ad_images", "file_path", "required"),
        Rule("ad_images.ad_id.references", "ad_images", "ad_id", "references", target="ads.id"),
    ]


_RULE_KEYS = {"table", "column", "type", "pattern", "references", "enabled"}


def rules_from_toml(document: Mapping[str, Any], base: list[Rule], *, source: str) -> list[Rule]:
    """Merge `[rules."id"]` tables into base: same id replaces, enabled = false removes."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: 'rules' must be a table of rule tables")
    merged = {rule.id: rule for rule in base}
    for rule_id, spec in document.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{source}: rule '{rule_id}' must be a table")
        unknown = sorted(set(spec) - _RULE_KEYS)
        if unknown:
            raise ConfigError(f"{source}: rule '{rule_id}': unknown key '{unknown[0]}'")
        if spec.get("enabled", True) is False:
            merged.pop(rule_id, None)
            continue
        merged[rule_id] = _rule_from_spec(rule_id, spec, merged.get(rule_id), source)
    return list(merged.values())


def _rule_from_spec(rule_id: str, spec: Mapping[str, Any], previous: Rule | None, source: str) -> Rule:
    parts = rule_id.split(".")
    guessed = {"table": parts[0], "column": parts[1], "type": parts[2]} if len(parts) == 3 else {}
    start = previous or Rule(
        rule_id, guessed.get("table", ""), guessed.get("column", ""), guessed.get("type", "")
    )
    values = {k: spec[k] for k in ("table", "column", "type", "pattern") if k in spec}
    if "references" in spec:
        values["target"] = spec["references"]
    for key, value in values.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{source}: rule '{rule_id}': '{key}' must be a non-empty string")
    rule = replace(start, **values)
    return validate_rule_shape(rule, source)


def validate_rule_shape(rule: Rule, source: str = "config") -> Rule:
    """Fail with the rule's id when the rule is incomplete; catalog checks come later."""
    prefix = f"{source}: rule '{rule.id}'"
    if rule.type not in RULE_TYPES:
        raise ConfigError(f"{prefix}: type must be one of {', '.join(RULE_TYPES)}")
    if not rule.table or not rule.column:
        raise ConfigError(f"{prefix}: needs 'table' and 'column'")
    if rule.type == "format" and not rule.pattern:
        raise ConfigError(f"{prefix}: a format rule needs 'pattern'")
    if rule.type == "references" and (not rule.target or "." not in rule.target):
        raise ConfigError(f"{prefix}: a references rule needs references = 'table.column'")
    return rule
