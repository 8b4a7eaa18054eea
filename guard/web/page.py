"""The status page: one server-rendered HTML document a person reads in five seconds.

Everything from the database is user content (a stored file name can be `<script>`), so every value
goes through html.escape; the page carries no script and loads nothing from anywhere else.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape
from typing import Any

from guard.continuous.liveness import PROCESSES
from guard.plural import plural
from guard.web.chart import open_findings_svg
from guard.web.readings import Example, Reading

STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{padding:14px 24px;background:#1d2430;color:#fff;display:flex;gap:18px;align-items:baseline}
header h1{font-size:19px;margin:0}
.badge{padding:3px 10px;border-radius:12px;font-weight:600}
.ok{background:#1f8f4e;color:#fff}.bad{background:#c62828;color:#fff}.warn{background:#e9a100;color:#1d2430}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.04em;color:#4a5566}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 8px 3px 0;vertical-align:top}
th{font-size:12px;color:#6b7585;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}
.muted{color:#6b7585}.ex{font:12px ui-monospace,monospace;color:#4a5566;word-break:break-all}
.big{font-size:26px;font-weight:700}
.chart{width:100%;height:auto}.chart text{font-size:11px;fill:#6b7585}
.chart .grid{stroke:#e3e6ea}.chart .line{fill:none;stroke:#c62828;stroke-width:2}
.chart .area{fill:#c6282822}.chart .dot{fill:#c62828}
form{display:flex;gap:8px;margin-top:12px}
"""


def status_page(r: Reading, refresh_s: int) -> str:
    """Return the whole page for one reading."""
    body = _down(r) if not r.up else _not_installed() if not r.installed else _sections(r)
    return _document("incident-guard status", _header(r), body, refresh_s)


def login_page(message: str = "") -> str:
    """Return the form that exchanges the token for an HttpOnly cookie."""
    note = f'<p class="bad badge">{escape(message)}</p>' if message else ""
    form = (
        "<section><h2>Sign in</h2><p>This page needs the token set in GUARD_WEB_TOKEN.</p>"
        f'{note}<form method="post" action="/login"><input type="password" name="token" '
        'autocomplete="current-password" aria-label="token" required autofocus>'
        '<button type="submit">Sign in</button></form></section>'
    )
    return _document(
        "incident-guard: sign in", "<header><h1>incident-guard</h1></header>", f"<main>{form}</main>", 0
    )


def _document(title: str, header: str, body: str, refresh_s: int) -> str:
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'{refresh}<link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{header}{body}</body></html>"
    )


def _header(r: Reading) -> str:
    if not r.up:
        badge = '<span class="badge bad">database unreachable</span>'
    elif not r.installed:
        badge = '<span class="badge warn">guard not installed</span>'
    elif r.pipeline_stalled:
        badge = '<span class="badge bad">pipeline stalled</span>'
    elif r.open_total:
        badge = f'<span class="badge bad" id="open-total">{r.open_total} open</span>'
    else:
        badge = '<span class="badge ok" id="open-total">0 open</span>'
    return (
        f"<header><h1>incident-guard</h1>{badge}"
        f'<span class="muted">read {escape(_when(r.taken_at))} in {r.read_ms:.0f} ms</span></header>'
    )


def _down(r: Reading) -> str:
    why = escape(r.error or "unreachable")
    return f'<main><section class="wide"><h2>Database</h2><p>{why}</p></section></main>'


def _not_installed() -> str:
    return (
        '<main><section class="wide"><h2>Not installed</h2>'
        "<p>guard's schema is not in this database: run <code>guard install</code>.</p></section></main>"
    )


def _sections(r: Reading) -> str:
    return (
        "<main>"
        + _open_now(r)
        + _weekly(r)
        + f'<section class="wide"><h2>Open findings, last {len(r.open_daily)} days</h2>'
        + open_findings_svg(r.open_daily)
        + "</section>"
        + _backups(r)
        + _pipeline(r)
        + "</main>"
    )


def _open_now(r: Reading) -> str:
    rows = r.open_by_kind()
    if not rows:
        return '<section class="wide" id="open"><h2>Open now</h2><p class="big">nothing open</p></section>'
    examples: dict[tuple[str, str], list[Example]] = {}
    for e in r.examples:
        examples.setdefault((e.check, e.kind), []).append(e)
    lines = [
        f'<tr data-kind="{escape(kind)}" data-check="{escape(check)}"><td class="n">{n}</td>'
        f'<td><b>{escape(kind)}</b><br><span class="muted">{escape(check)}</span></td>'
        f"<td>{''.join(_example(e) for e in examples.get((check, kind), []))}</td></tr>"
        for check, kind, n in rows
    ]
    return (
        f'<section class="wide" id="open"><h2>Open now: {r.open_total}</h2>'
        "<table><tr><th>open</th><th>kind</th><th>newest</th></tr>" + "".join(lines) + "</table></section>"
    )


def _example(e: Example) -> str:
    where = escape(e.subject) + (f" {escape(e.path)}" if e.path else "")
    return f'<div class="ex">{where}: {escape(e.message[:200])}</div>'


def _weekly(r: Reading) -> str:
    if not r.weekly:
        return (
            '<section id="weekly"><h2>Weekly numbers</h2><p class="muted">not recorded yet: this '
            "database has no history (run <code>guard install</code> to add it).</p></section>"
        )
    weeks = r.weekly
    head = "".join(f"<th>{escape(str(w['week']))}{'' if w['complete'] else ' (so far)'}</th>" for w in weeks)
    lines = []
    for name, first in weeks[-1]["numbers"].items():
        cells = "".join(_number_cell(w["numbers"][name]) for w in weeks)
        how = {"access_log": " (access log)", "slugs": " (ad slugs)"}.get(str(first.get("method")), "")
        lines.append(
            f'<tr data-number="{escape(name)}"><td>{escape(str(first["label"]))}{how}</td>{cells}'
            f'<td class="muted">{escape(str(first["target"]))}</td></tr>'
        )
    return (
        '<section id="weekly"><h2>Weekly numbers against their targets</h2><table>'
        f"<tr><th>number</th>{head}<th>target</th></tr>" + "".join(lines) + "</table></section>"
    )


def _number_cell(number: dict[str, Any]) -> str:
    status = str(number["status"])
    style = {"met": "ok", "missed": "bad"}.get(status)
    mark = (
        f' <span class="badge {style}">{escape(status)}</span>'
        if style
        else ' <span class="muted">no data</span>'
    )
    value = "" if number["value"] is None else escape(str(number["shown"]))
    return f'<td class="n">{value}{mark}</td>'


def _backups(r: Reading) -> str:
    if r.backups is None:
        return '<section id="backups"><h2>Backups</h2><p class="muted">BACKUP_DIR is not set</p></section>'
    rows = [
        f"<tr><td>{escape(b.id)}</td><td>{escape(_when(b.finished_at))}</td>"
        f'<td class="n">{_size(b.size_bytes)}</td><td class="n">{b.files:,}</td>'
        f"<td>{'verified (drill passed)' if b.verified else 'not verified'}"
        f"{'' if b.readable else ' DAMAGED: ' + escape(b.problem or '')}</td></tr>"
        for b in r.backups
    ]
    table = (
        "<table><tr><th>backup</th><th>finished</th><th>size</th><th>files</th><th>verified</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else '<p class="muted">no backup yet</p>'
    )
    if r.drill is None:
        drill = '<p class="muted">no restore drill yet</p>'
    else:
        verdict = (
            '<span class="badge ok">passed</span>' if r.drill.ok else '<span class="badge bad">failed</span>'
        )
        drill = (
            f"<p>last drill {verdict} {escape(_when(r.drill.at))}: restore took "
            f"<b>{r.drill.restore_s:.1f} s</b> ({escape(r.drill.backup or 'no backup')})</p>"
        )
    return f'<section id="backups"><h2>Backups, newest first</h2>{table}{drill}</section>'


def _pipeline(r: Reading) -> str:
    items: list[tuple[str, str]] = []
    if r.outbox is not None:
        items.append(("backlog", f"{plural(r.outbox.backlog, 'change')} not yet checked"))
        items.append(("lag", f"{r.outbox.oldest_age_s:.1f} s (oldest unchecked change)"))
        items.append(("dead", f"{plural(r.outbox.dead, 'parked change')}"))
    if r.queues is not None:
        items.append(("queues", ", ".join(f"{q} {n}" for q, n in r.queues.items())))
    else:
        items.append(("queues", f"unknown: {r.queues_error or 'Redis not read'}"))
    if r.canary is None:
        items.append(("canary", "not recorded yet"))
    else:
        latency = "none seen yet" if r.canary.latency_s is None else f"{r.canary.latency_s:.2f} s"
        items.append(("canary", f"{latency}; last seen {_when(r.canary.last_seen)}"))
    if r.pipeline_stalled:
        items.append(("pipeline", "STALLED: no canary came through"))
    if r.heartbeats is None:
        items.append(("processes", "not recorded yet (run guard install to upgrade)"))
    else:
        items.extend(_processes(r))
    checks = _check_rows(r)
    return (
        '<section id="pipeline"><h2>Continuous path</h2><table>'
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
        + "</table>"
        + checks
        + "</section>"
    )


def _processes(r: Reading) -> list[tuple[str, str]]:
    """Each process kind alive, STALE or MISSING, judged as `guard status` judges it."""
    seen = {h.process: h for h in r.heartbeats or ()}
    shown = []
    for process in [*PROCESSES, *sorted(set(seen) - set(PROCESSES))]:
        beat = seen.get(process)
        if beat is None:
            shown.append((process, "MISSING: no heartbeat"))
            continue
        age = _ago(r.taken_at, beat.last_seen)
        state = "alive" if r.taken_at - beat.last_seen <= r.stale_seconds else "STALE"
        shown.append((process, f"{state}: {plural(beat.instances, 'instance')}, last heartbeat {age}"))
    return shown


def _check_rows(r: Reading) -> str:
    if not r.checks:
        return '<p class="muted">no sweep recorded by the workers yet</p>'
    rows = "".join(
        f"<tr><td>{escape(c.check)}</td><td>{escape(_ago(r.taken_at, c.last_success))}</td>"
        f'<td class="n">{"" if c.duration_s is None else f"{c.duration_s:.1f} s"}</td></tr>'
        for c in r.checks
    )
    return f"<table><tr><th>sweep</th><th>last finished</th><th>took</th></tr>{rows}</table>"


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(now: float, ts: float | None) -> str:
    if ts is None:
        return "never"
    s = max(0.0, (now or time.time()) - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
