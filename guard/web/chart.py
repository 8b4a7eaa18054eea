"""The status page's chart: open findings at the end of each day, as inline SVG drawn on the server."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from guard.web.readings import DayCount

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 26


def open_findings_svg(days: Sequence[DayCount]) -> str:
    """Return an <svg> of open findings per day (a step line with its area), labelled by week."""
    if not days:
        return '<p class="muted">no findings recorded yet</p>'
    peak = max(max(d.open for d in days), 1)
    top = _nice(peak)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(n: int) -> float:
        return TOP + inner_h - inner_h * n / top

    points = " ".join(f"{x(i):.1f},{y(d.open):.1f}" for i, d in enumerate(days))
    area = f"{x(0):.1f},{y(0):.1f} {points} {x(len(days) - 1):.1f},{y(0):.1f}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="open findings per day over the last {len(days)} days">',
        f"<title>open findings per day; today {days[-1].open}</title>",
    ]
    for tick in (0, top // 2, top):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    for i, d in enumerate(days):
        if d.day.weekday() == 0:  # a label each Monday
            label = escape(d.day.strftime("%b %d"))
            parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">{label}</text>')
    parts.append(f'<polygon points="{area}" class="area"/>')
    parts.append(f'<polyline points="{points}" class="line"/>')
    parts.append(f'<circle cx="{x(len(days) - 1):.1f}" cy="{y(days[-1].open):.1f}" r="3" class="dot"/>')
    parts.append("</svg>")
    return "".join(parts)


def _nice(n: int) -> int:
    """Round an axis top up to 1, 2 or 5 times a power of ten."""
    scale = 1
    while True:
        for m in (1, 2, 5):
            if n <= m * scale:
                return m * scale
        scale *= 10
