"""deploy/: the Prometheus alert rules pass promtool's own check and unit tests, and the rules and the
Grafana dashboard use only the metric names and labels `guard serve` exports (issue 15's contract), so
a renamed metric fails here instead of silently never alerting.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "incident-guard.json"
# the same line the Makefile prints when it cannot install promtool
PROMTOOL_MISSING = (
    "promtool not found: install Debian's prometheus package (apt-get install prometheus), then run "
    "make test again; the alert rule tests fail until then"
)

# Issue 15's contract between the exporter and these files: name -> (type, labels). Add, never rename.
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "incident_guard_findings_open": ("gauge", frozenset({"check", "kind"})),
    "incident_guard_findings_opened_total": ("counter", frozenset({"check", "kind"})),
    "incident_guard_findings_resolved_total": ("counter", frozenset({"check", "kind"})),
    "incident_guard_check_last_run_timestamp_seconds": ("gauge", frozenset({"check"})),
    "incident_guard_check_last_success_timestamp_seconds": ("gauge", frozenset({"check"})),
    "incident_guard_check_duration_seconds": ("gauge", frozenset({"check"})),
    "incident_guard_outbox_backlog": ("gauge", frozenset()),
    "incident_guard_outbox_oldest_age_seconds": ("gauge", frozenset()),
    "incident_guard_outbox_dead": ("gauge", frozenset()),
    "incident_guard_queue_depth": ("gauge", frozenset({"queue"})),
    "incident_guard_backup_newest_timestamp_seconds": ("gauge", frozenset()),
    "incident_guard_backup_newest_size_bytes": ("gauge", frozenset()),
    "incident_guard_backup_newest_files": ("gauge", frozenset()),
    "incident_guard_backup_newest_verified": ("gauge", frozenset()),
    "incident_guard_backup_last_success_timestamp_seconds": ("gauge", frozenset()),
    "incident_guard_drill_last_timestamp_seconds": ("gauge", frozenset()),
    "incident_guard_drill_last_success": ("gauge", frozenset()),
    "incident_guard_drill_restore_seconds": ("gauge", frozenset()),
    "incident_guard_predeploy_runs_total": ("counter", frozenset({"verdict"})),
    "incident_guard_canary_latency_seconds": ("gauge", frozenset()),
    "incident_guard_canary_last_seen_timestamp_seconds": ("gauge", frozenset()),
    "incident_guard_pipeline_stalled": ("gauge", frozenset()),
    "incident_guard_process_last_heartbeat_timestamp_seconds": ("gauge", frozenset({"process"})),
    "incident_guard_up": ("gauge", frozenset()),
}
# Prometheus' own: `up` for the scrape target, and the labels every scraped series carries.
PROMETHEUS_METRICS = {"up": ("gauge", frozenset())}
TARGET_LABELS = frozenset({"job", "instance"})
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_WORD = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_COUNTER_CALL = re.compile(r"\b(?:rate|irate|increase|resets)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def names_in(expr: str) -> tuple[set[str], set[str], set[str]]:
    """Return the metric names, the label names and the names given to rate-like functions in expr."""
    labels: set[str] = set()
    counted = set(_COUNTER_CALL.findall(expr))
    for match in _SELECTOR.finditer(expr):
        labels.update(m.group(1) for m in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", match.group(2)))
    bare = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", _STRING.sub('""', expr))
    for match in _GROUPING.finditer(bare):
        labels.update(name.strip() for name in match.group(1).split(",") if name.strip())
    bare = _GROUPING.sub(" ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range and subquery durations
    bare = re.sub(r"\boffset\s+\w+", " ", bare)
    metrics = {m.group(1) for m in _WORD.finditer(bare) if not m.group(2) and m.group(1) not in KEYWORDS}
    return metrics, labels, counted


def rule_expressions() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [(rule["alert"], rule["expr"]) for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for panel in _panels(dashboard["panels"]):
        found.extend((panel["title"], target["expr"]) for target in panel.get("targets", []))
    return found


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for panel in panels for p in [panel, *_panels(panel.get("panels", []))]]


def contract_problems(expr: str) -> list[str]:
    """Name every metric, label or counter function in expr that the contract does not allow."""
    known = {**CONTRACT, **PROMETHEUS_METRICS}
    metrics, labels, counted = names_in(expr)
    problems = [f"unknown metric {m}" for m in sorted(metrics - set(known))]
    if not metrics & set(CONTRACT) and metrics != {"up"}:
        problems.append("uses no incident_guard_ metric")
    allowed = TARGET_LABELS.union(*(known[m][1] for m in metrics if m in known))
    problems += [f"label {label} is not one of its metrics'" for label in sorted(labels - allowed)]
    problems += [f"{m} is not a counter" for m in sorted(counted) if known.get(m, ("", ""))[0] != "counter"]
    return problems


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(PROMTOOL_MISSING, pytrace=False)
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    run = _promtool("check", "rules", RULES.name)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    run = _promtool("test", "rules", RULE_TESTS.name)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {name for name, _ in rule_expressions()} <= tested


def test_the_rules_cover_what_the_issue_asks_for() -> None:
    exprs = " ".join(expr for _, expr in rule_expressions())
    for metric in (
        "incident_guard_findings_open",
        "incident_guard_pipeline_stalled",
        "incident_guard_backup_last_success_timestamp_seconds",
        "incident_guard_drill_last_success",
        "incident_guard_outbox_oldest_age_seconds",
        "incident_guard_up",
        "incident_guard_process_last_heartbeat_timestamp_seconds",
    ):
        assert metric in names_in(exprs)[0], metric
    assert "up" in names_in(exprs)[0]


@pytest.mark.parametrize("alert, expr", rule_expressions(), ids=lambda v: str(v)[:40])
def test_an_alert_uses_only_contract_names(alert: str, expr: str) -> None:
    assert contract_problems(expr) == [], alert


def test_the_dashboard_is_a_grafana_model_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "incident-guard" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["id"] is None  # importable anywhere
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard["panels"])
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_the_dashboard_uses_only_contract_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    problems = {
        f"{title}: {expr}": found
        for title, expr in dashboard_expressions(dashboard)
        if (found := contract_problems(expr))
    }
    assert problems == {}
    shown = set().union(*(names_in(e)[0] for _, e in dashboard_expressions(dashboard)))
    assert set(CONTRACT) <= shown, f"not on the dashboard: {sorted(set(CONTRACT) - shown)}"


@pytest.mark.parametrize(
    "expr, problem",
    [
        ("incident_guard_findings_opened > 0", "unknown metric incident_guard_findings_opened"),
        ('sum by (status) (incident_guard_findings_open{check="files"})', "label status"),
        ('incident_guard_queue_depth{name="events"} > 5', "label name"),
        ("rate(incident_guard_outbox_backlog[5m]) > 1", "incident_guard_outbox_backlog is not a counter"),
        ("time() - backup_last_success_timestamp_seconds > 60", "unknown metric backup_last_success"),
        ("vector(1)", "uses no incident_guard_ metric"),
    ],
)
def test_a_renamed_metric_or_label_is_caught(expr: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in contract_problems(expr)), contract_problems(expr)


def test_names_are_read_out_of_promql() -> None:
    expr = (
        'sum by (kind) (increase(incident_guard_findings_opened_total{check=~"a|b", kind!=""}[1h] offset 1d))'
        " / on (kind) group_left () sum by (kind) (incident_guard_findings_open) > bool 0"
    )
    assert names_in(expr) == (
        {"incident_guard_findings_opened_total", "incident_guard_findings_open"},
        {"check", "kind"},
        {"incident_guard_findings_opened_total"},
    )
