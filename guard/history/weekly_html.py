"""The weekly numbers as one self-contained HTML file: inline CSS and SVG, no script, every text escaped.

A person attaches it to an email: it must open anywhere, offline, and show the same numbers as the
terminal and JSON. Nothing in it comes from outside the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from guard.history.accesslog import AccessTally
from guard.history.weekly import (
    AD_404,
    BACKUPS,
    DRIFT,
    LABELS,
    MET,
    MISSED,
    MISSING_IMAGES,
    NAMES,
    PREDEPLOY,
    TARGETS,
    Number,
    Week,
)

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em;color:#1f2328}
h1{font-size:1.4em}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #d0d7de;padding:.35em .6em;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}
td.met{background:#dafbe1}td.missed{background:#ffebe9;font-weight:bold}td.nodata{color:#6e7781;background:#f6f8fa}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}.chart h2{font-size:1em;margin:.2em 0}
.note{color:#57606a;font-size:.9em}
"""
BAR_W, GAP, CHART_H, LABEL_H = 26, 8, 110, 34
COLORS = {MET: "#2da44e", MISSED: "#cf222e"}
LINES = {
    DRIFT: 0.0,
    AD_404: 0.001,
    MISSING_IMAGES: 0.005,
    BACKUPS: 1.0,
    PREDEPLOY: 0.95,
}  # each target, drawn


def render(weeks: Sequence[Week], *, generated_at: datetime, access: AccessTally | None) -> str:
    """Return the whole HTML document."""
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>incident-guard weekly numbers</title>"
        f"<style>{CSS}</style></head><body>"
    )
    parts = [
        head,
        "<h1>incident-guard: the weekly numbers</h1>",
        f'<p class="note">Generated {escape(generated_at.isoformat(timespec="seconds"))}; ISO weeks, '
        "Monday 00:00 UTC to Monday 00:00 UTC; the last week is still running.</p>",
        _method(access),
        _table(weeks),
        '<div class="charts">',
        *(_chart(name, weeks) for name in NAMES),
        "</div></body></html>\n",
    ]
    return "".join(parts)


def _method(access: AccessTally | None) -> str:
    if access is None:
        return (
            "<p>404s on ad pages: <b>measured from the slugs</b>: the share of ads whose "
            "<code>/ad/&lt;slug&gt;</code> cannot resolve (NULL, blank, malformed or duplicate slug), "
            "over the week's daily snapshots.</p>"
        )
    files = ", ".join(f"<code>{escape(f)}</code>" for f in access.files)
    return (
        "<p>404s on ad pages: <b>measured from the access log</b>: requests to the ad route answered "
        f"404 among all requests to it ({access.ad_requests} in {access.lines} lines of {files}; "
        f"{access.malformed} malformed lines skipped).</p>"
    )


def _table(weeks: Sequence[Week]) -> str:
    header = "".join(f"<th>{escape(w.label)}{'' if w.complete else ' (so far)'}</th>" for w in weeks)
    rows = [f"<table><thead><tr><th>number</th><th>target</th>{header}</tr></thead><tbody>"]
    for name in NAMES:
        cells = "".join(_cell(w.number(name)) for w in weeks)
        rows.append(f"<tr><td>{escape(LABELS[name])}</td><td>{escape(TARGETS[name])}</td>{cells}</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _cell(number: Number) -> str:
    css = "nodata" if number.status not in COLORS else number.status
    detail = "" if number.denominator is None else f" ({number.numerator} of {number.denominator})"
    title = escape(f"{number.status}{detail if number.numerator is not None else ''}")
    return f'<td class="{css}" title="{title}">{escape(number.shown())}</td>'


def _chart(name: str, weeks: Sequence[Week]) -> str:
    """One bar per week, coloured by status; a week with no data is a grey dash."""
    numbers = [w.number(name) for w in weeks]
    values = [n.value for n in numbers]
    # Rates are drawn on 0..100%; counts and small ratios up to the larger of their peak and twice the target.
    top = (
        1.0
        if name in (BACKUPS, PREDEPLOY)
        else max([v for v in values if v is not None] + [LINES[name] * 2 or 1.0])
    )
    width = len(weeks) * (BAR_W + GAP) + GAP
    bars: list[str] = []
    for i, (week, number) in enumerate(zip(weeks, numbers, strict=True)):
        x = GAP + i * (BAR_W + GAP)
        label = escape(week.label[-3:])
        bars.append(
            f'<text x="{x + BAR_W / 2}" y="{CHART_H + 14}" font-size="10" text-anchor="middle">{label}</text>'
        )
        if number.value is None:
            bars.append(
                f'<text x="{x + BAR_W / 2}" y="{CHART_H - 4}" font-size="7" fill="#8c959f" '
                'text-anchor="middle">no data</text>'
            )
            continue
        height = max(1.0, CHART_H * number.value / top) if number.value else 1.0
        colour = COLORS.get(number.status, "#8c959f")
        tip = escape(f"{week.label}: {number.shown()} ({number.status})")
        bars.append(
            f'<rect x="{x}" y="{CHART_H - height:.1f}" width="{BAR_W}" height="{height:.1f}" fill="{colour}">'
            f"<title>{tip}</title></rect>"
        )
    line = LINES[name]
    if line:
        y = CHART_H - CHART_H * line / top
        bars.append(
            f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#57606a" stroke-dasharray="4 3"/>'
        )
    title = escape(f"{LABELS[name]} (target {TARGETS[name]})")
    return (
        f'<div class="chart"><h2>{title}</h2><svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{CHART_H + LABEL_H}" viewBox="0 0 {width} {CHART_H + LABEL_H}">'
        f'<title>{title}</title><line x1="0" x2="{width}" y1="{CHART_H}" y2="{CHART_H}" stroke="#d0d7de"/>'
        f"{''.join(bars)}</svg></div>"
    )
